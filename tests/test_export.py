"""Subscribable output: Atom 1.0 per story (web and ``monitor export``), JSON and CSV exports."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import feedparser
import httpx
import pytest

from tests.conftest import Project
from tests.servers import FeedServer
from tests.web_support import HOSTILE_TITLE, STORY_ID, Desk, ServedDesk, build_desk

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    with FeedServer() as server:
        yield build_desk(Project(tmp_path_factory.mktemp("export")), server)


def check_atom(body: bytes, desk: Desk, *, base: str | None) -> feedparser.FeedParserDict:
    """Atom 1.0 by RFC 4287's rules, and parsed back by feedparser entry by entry."""
    root = ET.fromstring(body)
    assert root.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated", "author"):
        assert root.find(f"{ATOM}{required}") is not None, required
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == len(desk.developments) == 3
    for entry in entries:
        for required in ("id", "title", "updated", "published", "content", "link"):
            assert entry.find(f"{ATOM}{required}") is not None, required
        assert entry.find(f"{ATOM}id").text.startswith("urn:uuid:")  # type: ignore[union-attr]
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    by_title = {e.title: e for e in parsed.entries}
    assert set(by_title) == {d["title"] for d in desk.developments}
    assert parsed.entries[0].title == "Budapest-Gipfel auf Eis gelegt"  # newest first
    for dev in desk.developments:
        entry = by_title[dev["title"]]
        assert entry.id.startswith("urn:uuid:")
        assert entry.updated_parsed is not None and entry.published_parsed is not None
        html = entry.content[0].value
        assert dev["novel"][0].split("<")[0].strip() in html
        for src in dev["sources"]:
            assert src["feed"] in html
        if base:
            assert entry.link == f"{base}/stories/{STORY_ID}#dev-{dev['id']}"
    assert len({e.id for e in parsed.entries}) == 3
    # Feed text is escaped inside the HTML content: no live markup from the feed.
    hostile = by_title[HOSTILE_TITLE]
    assert "<script>" not in hostile.content[0].value
    assert "&lt;script&gt;" in hostile.content[0].value
    return parsed


def test_atom_feed_served_per_story_is_valid_and_stable(desk: Desk) -> None:
    served = ServedDesk(desk.project)
    try:
        url = f"{served.url}/stories/{STORY_ID}/developments.atom"
        first = httpx.get(url, timeout=20)
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("application/atom+xml")
        parsed = check_atom(first.content, desk, base=served.url)
        links = {link.rel: link.href for link in parsed.feed.links}
        assert links["self"] == url
        assert links["alternate"] == f"{served.url}/stories/{STORY_ID}"
        again = feedparser.parse(httpx.get(url, timeout=20).content)
        assert [e.id for e in again.entries] == [e.id for e in parsed.entries]
        assert [e.updated for e in again.entries] == [e.updated for e in parsed.entries]
        assert httpx.get(f"{served.url}/stories/nope/developments.atom", timeout=20).status_code == 404
    finally:
        assert served.stop() == 0


def test_cli_export_atom_matches_the_served_ids(desk: Desk) -> None:
    result = desk.project.cli(
        "export", "--story", STORY_ID, "--format", "atom", "--base-url", "https://desk.example.org"
    )
    assert result.exit_code == 0, result.stderr
    parsed = check_atom(result.stdout.encode(), desk, base="https://desk.example.org")
    # The same ids as the JSON export's uid: stable across outputs.
    exported = json.loads(desk.project.cli("export", "--story", STORY_ID, "--format", "json").stdout)
    assert {e.id for e in parsed.entries} == {d["uid"] for d in exported}


def test_cli_export_json_and_csv(desk: Desk) -> None:
    out = desk.project.dir / "devs.json"
    result = desk.project.cli("export", "--story", STORY_ID, "--format", "json", "--output", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert rows[0]["title"] == "Budapest-Gipfel auf Eis gelegt"
    folder = desk.project.cli("export", "--story", STORY_ID, "--output", str(desk.project.dir))
    assert folder.exit_code == 2 and "is a folder" in folder.stderr
    for row in rows:
        assert {"id", "uid", "story", "title", "first_seen", "sources", "novel", "score"} <= set(row)
        assert row["first_seen"].endswith("Z")
        assert all({"url", "feed", "title", "published", "first"} <= set(s) for s in row["sources"])

    csv_text = desk.project.cli("export", "--story", STORY_ID, "--format", "csv").stdout
    table = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(table) == 3
    cancel = next(r for r in table if r["title"] == "Budapest-Gipfel auf Eis gelegt")
    assert cancel["source_count"] == "2" and cancel["first_source_feed"] == "zeitung"
    assert cancel["first_source_url"] == "https://zeitung.example.org/artikel/z-3"
    assert cancel["uid"] == next(r["uid"] for r in rows if r["title"] == cancel["title"])


def _development(title: str, novel: list[str], feed: str, source_title: str) -> dict[str, object]:
    """A development as ``views.developments`` gives it, with the given text in it."""
    from datetime import UTC, datetime

    now = datetime(2025, 10, 17, tzinfo=UTC)
    source = {"url": "https://a.example/", "feed": feed, "title": source_title, "published": now}
    return {
        "id": 1,
        "story": "s",
        "key": "k",
        "title": title,
        "first_seen": now,
        "updated_at": now,
        "score": 1.0,
        "novel": novel,
        "sources": [source],
    }


def test_csv_cells_never_start_a_spreadsheet_formula() -> None:
    from monitor.web.export import developments_csv

    dev = _development('=HYPERLINK("http://evil")', ["+1 Satz", "@Satz"], "-feed", "t")
    row = next(csv.DictReader(io.StringIO(developments_csv([dev]))))
    assert row["title"].startswith("'=")
    assert row["novel"].startswith("'+")
    assert row["first_source_feed"] == "'-feed"


def test_atom_stays_well_formed_with_characters_xml_does_not_allow() -> None:
    """Feed text may carry control characters or a lone surrogate; ElementTree writes them as they
    are, which made the whole feed unreadable. They become U+FFFD."""
    from monitor.web.export import developments_atom

    dev = _development(
        "Gipfel\x01 abgesagt\x1f", ["Der Gipfel\x0b ist abgesagt \ud800."], "feed\x02", "t\x0c"
    )
    root = ET.fromstring(developments_atom("s", "Story\x07", [dev]))
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert root.findtext("a:entry/a:title", namespaces=ns) == "Gipfel\ufffd abgesagt\ufffd"
    assert root.findtext("a:entry/a:summary", namespaces=ns) == "Der Gipfel\ufffd ist abgesagt \ufffd."
    assert root.findtext("a:title", namespaces=ns) == "Story\ufffd: developments"
    assert "feed\ufffd" in (root.findtext("a:entry/a:content", namespaces=ns) or "")


def test_a_story_removed_from_the_config_can_still_be_exported(desk: Desk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Archiving a finished story after taking it out of the config: the database still has it (the
    story desk serves it as 'no longer configured'), so the export does too, titled by its id."""
    removed = Project(tmp_path)
    removed.write({"database": f"sqlite:///{desk.project.db_path}"})
    as_configured = json.loads(desk.project.cli("export", "--story", STORY_ID, "--format", "json").stdout)
    result = removed.cli("export", "--story", STORY_ID, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == as_configured and as_configured
    atom = removed.cli("export", "--story", STORY_ID)
    assert atom.exit_code == 0
    root = ET.fromstring(atom.stdout.encode())
    assert root.findtext("{http://www.w3.org/2005/Atom}title") == f"{STORY_ID}: developments"
    unknown = removed.cli("export", "--story", "nope")
    assert unknown.exit_code == 2 and f"unknown story 'nope' (known: {STORY_ID})" in unknown.stderr


def test_an_exported_file_gets_the_usual_permissions(desk: Desk) -> None:
    """``-o FILE`` writes atomically through a temporary file, which is created 0600; a new file
    gets what the umask gives (here 0644), an existing one keeps its own."""
    import os

    new, kept = desk.project.dir / "neu.csv", desk.project.dir / "alt.csv"
    kept.write_text("")
    kept.chmod(0o640)
    previous = os.umask(0o022)
    try:
        for path in (new, kept):
            result = desk.project.cli("export", "--story", STORY_ID, "--format", "csv", "-o", str(path))
            assert result.exit_code == 0, result.stderr
    finally:
        os.umask(previous)
    assert new.stat().st_mode & 0o777 == 0o644
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text().startswith("id,")


def test_export_errors_are_usage_errors(desk: Desk) -> None:
    unknown = desk.project.cli("export", "--story", "nope")
    assert unknown.exit_code == 2 and "unknown story" in unknown.stderr
    bad_format = desk.project.cli("export", "--story", STORY_ID, "--format", "rss")
    assert bad_format.exit_code == 2
    bad_url = desk.project.cli("export", "--story", STORY_ID, "--base-url", "javascript:alert(1)")
    assert bad_url.exit_code == 2 and "--base-url" in bad_url.stderr
