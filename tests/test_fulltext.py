"""Full text and developments end to end: teaser feeds, article pages on a loopback server,
``monitor poll`` / ``developments`` / ``story show``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

from sqlalchemy import select

from monitor.fulltext import extract_article
from monitor.store import Store
from monitor.store.models import Item
from tests import diff_texts as T
from tests.conftest import Project
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def article_page(title: str, text: str) -> str:
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in text.strip().splitlines())
    return (
        "<!DOCTYPE html><html lang='de'><head><meta charset='utf-8'>"
        f"<title>{escape(title)} | Nordland-Kurier</title></head><body>"
        "<header><nav><a href='/'>Startseite</a> <a href='/politik'>Politik</a> "
        "<a href='/sport'>Sport</a></nav></header>"
        f"<main><article><h1>{escape(title)}</h1>{paragraphs}</article></main>"
        "<aside><h2>Meistgelesen</h2><ul><li><a href='/a'>Wetter: Sturm an der Küste</a></li>"
        "<li><a href='/b'>Fußball: Derby endet torlos</a></li></ul></aside>"
        "<footer>© Nordland-Kurier. Impressum. Datenschutz. Cookie-Einstellungen.</footer>"
        "</body></html>"
    )


def test_extract_article_keeps_the_article_and_drops_the_page_furniture() -> None:
    result = extract_article(article_page(T.CANCELLATION_TITLE, T.CANCELLATION), "https://example.org/a")
    assert result.status == "ok"
    assert result.text is not None
    assert "Igor Malenko" in result.text
    assert "Meistgelesen" not in result.text and "Impressum" not in result.text


def test_extract_article_failure_says_why() -> None:
    result = extract_article("<html><body><nav>Start</nav></body></html>", "https://example.org/x")
    assert result.text is None
    assert result.status.startswith("failed:")
    short = extract_article(article_page("Kurz", "Nur ein Satz."), "https://example.org/y", teaser="x" * 50)
    assert short.text is None and short.status.startswith("failed:")


def _config(server: FeedServer, *, allow_private: bool = True) -> dict:
    return {
        "fetch": {"interval": "1s", "jitter": "0s", "allow_private_addresses": allow_private},
        "feeds": [
            {"name": "kurier", "url": server.url("/kurier.xml"), "fulltext": True},
            {"name": "agentur", "url": server.url("/agentur.xml"), "fulltext": True},
        ],
        "stories": [T.STORY],
    }


def test_poll_fetches_full_text_and_flags_one_development_across_outlets(
    project: Project, feed_server: FeedServer
) -> None:
    restated = FakeEntry(
        "k-1",
        T.RESTATEMENT_TITLE,
        "Berger will Ostrow in Graz treffen.",
        feed_server.url("/artikel/k-1"),
        T0,
    )
    feed_server.put(
        "/artikel/k-1",
        article_page(T.RESTATEMENT_TITLE, T.RESTATEMENT),
        content_type="text/html; charset=utf-8",
    )
    feed_server.put("/kurier.xml", rss([restated]))
    feed_server.put("/agentur.xml", rss([]))
    project.write(_config(feed_server))

    assert project.cli("poll").exit_code == 0
    assert project.cli("developments", "--json").json() == []
    assert len(feed_server.requests_for("/artikel/k-1")) == 1

    # Round 2: the cancellation, as a teaser with the article behind the link, and a wire copy
    # whose article page is gone (404): that one keeps its teaser (which carries the text).
    cancelled = FakeEntry(
        "k-2",
        T.CANCELLATION_TITLE,
        "Neues vom Gipfel in Graz.",
        feed_server.url("/artikel/k-2"),
        T0 + timedelta(hours=2),
    )
    feed_server.put(
        "/artikel/k-2",
        article_page(T.CANCELLATION_TITLE, T.CANCELLATION),
        content_type="text/html; charset=utf-8",
    )
    copy = FakeEntry(
        "a-1",
        T.CANCELLATION_COPY_TITLE,
        " ".join(T.CANCELLATION_COPY.split("\n")),
        feed_server.url("/artikel/weg"),
        T0 + timedelta(hours=3),
    )
    feed_server.put("/kurier.xml", rss([cancelled, restated]))
    feed_server.put("/agentur.xml", rss([copy]))
    assert project.cli("poll").exit_code == 0

    devs = project.cli("developments", "--json").json()
    assert len(devs) == 1, devs
    dev = devs[0]
    # The novel sentences come from the article page, not from the one-line teaser.
    assert any("Igor Malenko" in s for s in dev["novel"])
    assert sorted(s["feed"] for s in dev["sources"]) == ["agentur", "kurier"]
    assert dev["score"] >= 1.0
    assert len(feed_server.requests_for("/artikel/k-1")) == 1  # known items are not fetched again

    store = Store(f"sqlite:///{project.db_path}")
    try:
        with store.session() as session:
            statuses = {i.entry_id: (i.fulltext_status, i.fulltext) for i in session.scalars(select(Item))}
    finally:
        store.close()
    assert statuses["k-2"][0] == "ok" and "Wortbruch" in (statuses["k-2"][1] or "")
    assert statuses["a-1"][0].startswith("failed: http") and statuses["a-1"][1] is None

    # A re-run changes nothing: no second development, no second source.
    assert project.cli("poll").exit_code == 0
    again = project.cli("developments", "--json").json()
    assert [(d["id"], len(d["sources"])) for d in again] == [(dev["id"], 2)]

    human = project.cli("developments")
    assert human.exit_code == 0
    assert T.CANCELLATION_TITLE in human.stdout
    assert "*Malenko*" in human.stdout  # new against the baseline, marked (output is not a terminal)
    assert "*Graz*" not in human.stdout

    story = project.cli("story", "show", "graz-gipfel")
    assert story.exit_code == 0, story.stderr
    baseline_at = story.stdout.index("Baseline")
    assert story.stdout.index("Grenzflusses Tarn") > baseline_at
    assert story.stdout.index(T.CANCELLATION_TITLE) > story.stdout.index("Developments")
    shown = project.cli("story", "show", "graz-gipfel", "--json").json()
    assert shown["developments"][0]["id"] == dev["id"] and shown["baseline"]

    assert project.cli("story", "show", "nope").exit_code == 2


def test_private_article_address_is_refused_and_the_teaser_kept(
    project: Project, feed_server: FeedServer
) -> None:
    entry = FakeEntry(
        "k-9", T.CANCELLATION_TITLE, " ".join(T.CANCELLATION.split("\n")), feed_server.url("/artikel/k-9"), T0
    )
    feed_server.put("/artikel/k-9", article_page(T.CANCELLATION_TITLE, T.CANCELLATION))
    feed_server.put("/kurier.xml", rss([entry]))
    feed_server.put("/agentur.xml", rss([]))
    project.write(_config(feed_server, allow_private=False))
    assert project.cli("poll").exit_code == 0
    assert feed_server.requests_for("/artikel/k-9") == []
    store = Store(f"sqlite:///{project.db_path}")
    try:
        with store.session() as session:
            status = session.scalars(select(Item.fulltext_status).where(Item.entry_id == "k-9")).one()
    finally:
        store.close()
    assert status.startswith("failed: forbidden_address")
    # The teaser carried the news: the development is still found.
    assert len(project.cli("developments", "--json").json()) == 1


def test_match_with_a_url_baseline_writes_nothing(
    project: Project, feed_server: FeedServer, tmp_path: Path
) -> None:
    """`monitor match` only explains: with a URL baseline it neither creates the database nor keeps a
    copy (the README: it writes nothing)."""
    feed_server.put(
        "/baseline", article_page("Gipfel in Graz", T.BASELINE), content_type="text/html; charset=utf-8"
    )
    config = _config(feed_server)
    config["stories"] = [{**T.STORY, "baseline": {"url": feed_server.url("/baseline")}}]
    project.write(config)
    article = tmp_path / "artikel.txt"
    article.write_text("Gipfel in Graz abgesagt\nDas Treffen findet nicht statt.", encoding="utf-8")
    result = project.cli("match", "--story", T.STORY["id"], str(article))
    assert result.exit_code == 0, result.stderr
    assert not project.db_path.exists()


def test_baseline_from_url_is_fetched_and_extracted(project: Project, feed_server: FeedServer) -> None:
    feed_server.put(
        "/baseline", article_page("Gipfel in Graz", T.BASELINE), content_type="text/html; charset=utf-8"
    )
    feed_server.put("/kurier.xml", rss([]))
    feed_server.put("/agentur.xml", rss([]))
    config = _config(feed_server)
    config["stories"] = [{**T.STORY, "baseline": {"url": feed_server.url("/baseline")}}]
    project.write(config)
    story = project.cli("story", "show", "graz-gipfel", "--json")
    assert story.exit_code == 0, story.stderr
    assert any("Grenzflusses Tarn" in s for s in story.json()["baseline"])
    # The page goes away: the copy kept from the last fetch stands in, with a warning, and every
    # feed is polled as before.
    feed_server.put("/baseline", b"", status=503)
    again = project.cli("story", "show", "graz-gipfel", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["baseline"] == story.json()["baseline"]
    assert "using the copy fetched earlier" in again.stderr
    polled = project.cli("poll", "--json")
    assert polled.exit_code == 0, polled.stderr
    assert len(polled.json()["feeds"]) == 2
    # A URL never fetched has no copy: an error that names the story's key, exit 2.
    config["stories"] = [{**T.STORY, "baseline": {"url": feed_server.url("/baseline?neu")}}]
    project.write(config)
    failed = project.cli("story", "show", "graz-gipfel")
    assert failed.exit_code == 2
    assert "baseline.url" in failed.stderr and "no earlier copy" in failed.stderr
