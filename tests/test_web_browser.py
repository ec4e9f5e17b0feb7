"""The story desk in a real browser: headless Chromium (Debian's) driven by Playwright loads the
dashboard of a database filled by a real poll of loopback feeds. Screenshots: test-artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Project
from tests.servers import FeedServer
from tests.web_support import STORY_ID, Desk, ServedDesk, build_desk

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("MONITOR_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip(
            "Chromium not found (install Debian's 'chromium' and 'chromium-driver'; .ci/run does): "
            "the browser test of the dashboard did not run"
        )
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is a test dependency
        pytest.skip(f"playwright is not installed ({exc}): the browser test did not run")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser: Any, problems: list[str], **context_args: Any) -> Any:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, **context_args)
    page = context.new_page()
    page.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return page


@pytest.fixture(scope="module")
def desk(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """One desk for the module (a real poll takes a few seconds); the tests only read it."""
    with FeedServer() as server:
        yield build_desk(Project(tmp_path_factory.mktemp("desk")), server, hostile=True)


@pytest.fixture(scope="module")
def served(desk: Desk) -> Iterator[ServedDesk]:
    served = ServedDesk(desk.project)
    yield served
    assert served.stop() == 0, "monitor serve should exit 0 on SIGTERM"


def test_dashboard_renders_chart_developments_and_health(
    browser: Any, desk: Desk, served: ServedDesk
) -> None:
    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    page = _page(browser, problems)

    # Overview: the story card and the failing feed on top of feed health.
    page.goto(served.url + "/", wait_until="load")
    assert page.locator(".story-card h2").inner_text() == "Trump–Putin-Gipfel in Budapest"
    assert "3 developments" in " ".join(page.locator(".story-card .stats").inner_text().split())
    assert page.locator("table.feeds tbody tr").first.locator(".feedname").inner_text() == "kaputt"
    assert "kaputt" in page.locator(".alert").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

    # The story page.
    page.click(".story-card")
    page.wait_for_url(f"**/stories/{STORY_ID}")
    chart = page.locator("svg#timeline")
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150
    bars = page.locator("svg#timeline rect.bar")
    hour_bars = bars.count()
    assert hour_bars >= 10
    heights = [float(h) for h in bars.evaluate_all("els => els.map(e => e.getAttribute('height'))")]
    assert all(h > 0 for h in heights)
    # Every outlet with matched items is in the legend (the failing one has none).
    legend = page.locator(".legend li").all_inner_texts()
    assert {entry.split()[0] for entry in legend} >= {"zeitung", "blatt", "atomwelt", "development"}
    # Developments are marked on the chart and listed newest first, numbered like the markers.
    assert page.locator("svg#timeline .marker").count() == 3
    articles = page.locator("article.development")
    assert articles.count() == 3
    titles = [t.strip() for t in page.locator("article.development h3").all_inner_texts()]
    assert titles[0] == "Budapest-Gipfel auf Eis gelegt"
    assert titles[2] == "Kreml warnt vor Tomahawk-Lieferung"
    assert page.locator("article.development .num-badge").all_inner_texts() == ["3", "2", "1"]
    marker_link = page.locator("svg#timeline .marker").nth(2).get_attribute("href")
    assert (
        marker_link == f"#dev-{next(d['id'] for d in desk.developments if d['key'] == 'test-gipfel-auf-eis')}"
    )
    # Novel words are highlighted against the baseline: "vorerst" is new, "Das" is not.
    cancel = articles.first
    marks = [m.strip() for m in cancel.locator("ul.novel mark").all_inner_texts()]
    assert any("vorerst" in m for m in marks), marks
    assert not any(m == "Das" for m in marks), marks
    # Sources with outlet, time and link; the earliest is marked first.
    sources = cancel.locator("ol.sources li")
    assert sources.count() == 2
    assert sources.first.locator(".pill-first").inner_text() == "first"
    assert sources.first.locator(".outlet").inner_text() == "zeitung"
    assert sources.nth(1).locator(".pill-first").count() == 0
    assert sources.first.locator("a").get_attribute("href") == "https://zeitung.example.org/artikel/z-3"
    assert sources.first.locator("time").inner_text() == "16.10.2025 11:21"  # Europe/Berlin
    # Baseline and the story so far, feed health with the failing feed on top.
    assert "Orbán" in (page.locator("#story-so-far .baseline").text_content() or "")  # in a closed <details>
    chrono = page.locator("#story-so-far ol.chrono li").all_inner_texts()
    assert len(chrono) == 3 and "Kreml warnt" in chrono[0]
    first_row = page.locator("#feed-health table.feeds tbody tr").first
    assert first_row.locator(".feedname").inner_text() == "kaputt"
    assert first_row.locator(".pill").inner_text() == "failing"
    page.screenshot(path=str(ARTIFACTS / "dashboard-story.png"), full_page=True)
    chart.screenshot(path=str(ARTIFACTS / "dashboard-timeline.png"))

    # Per day: fewer, taller bars.
    page.click(".toggle a:has-text('per day')")
    page.wait_for_url("**bucket=day")
    assert 1 <= page.locator("svg#timeline rect.bar").count() < hour_bars

    page.goto(served.url + "/feeds")
    assert page.locator("table.feeds tbody tr").count() == 4
    page.screenshot(path=str(ARTIFACTS / "dashboard-feeds.png"), full_page=True)
    assert problems == []


def test_hostile_feed_text_is_shown_escaped_never_executed(browser: Any, served: ServedDesk) -> None:
    problems: list[str] = []
    page = _page(browser, problems)
    page.goto(f"{served.url}/stories/{STORY_ID}", wait_until="load")
    # Nothing ran: no script element, no handler attribute, no injected image, no dialog.
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.scripts.length") == 0
    assert page.locator("img").count() == 0
    assert page.locator("[onerror]").count() == 0
    # ...and the text is there, as text.
    hostile = page.locator("article.development", has_text="window.__pwned = 1")
    assert hostile.count() == 1
    assert "<script>window.__pwned = 1</script>" in hostile.locator("h3").inner_text()
    assert '<img src=x onerror="window.__pwned=4">' in hostile.locator("ul.novel").inner_text()
    # The javascript: link from the feed never became an href.
    hrefs = page.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href') || '')")
    assert not [h for h in hrefs if h.strip().lower().startswith(("javascript:", "data:"))]
    page.screenshot(path=str(ARTIFACTS / "dashboard-hostile.png"), full_page=True)
    assert problems == []


def test_token_protected_desk_works_in_a_browser_after_access_token_link(browser: Any, desk: Desk) -> None:
    # web.token_env set through the environment, like any config key.
    served = ServedDesk(
        desk.project, env={"MONITOR_WEB__TOKEN_ENV": "DESK_TOKEN", "DESK_TOKEN": "s3cr3t-token"}
    )
    problems: list[str] = []
    try:
        page = _page(browser, problems)
        response = page.goto(served.url + "/", wait_until="load")
        assert response is not None and response.status == 401
        response = page.goto(served.url + "/?access_token=s3cr3t-token", wait_until="load")
        assert response is not None and response.status == 200
        # The cookie set by that visit carries the token to the next pages.
        page.click(".story-card")
        page.wait_for_url(f"**/stories/{STORY_ID}")
        assert page.locator("svg#timeline").is_visible()
    finally:
        code = served.stop()
    assert code == 0, "monitor serve should exit 0 on SIGTERM"
    assert [p for p in problems if "401 (Unauthorized)" not in p] == []  # Chromium logs the 401 itself
