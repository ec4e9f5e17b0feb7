"""Entity declarations in any letter case never expand, on the parse path the ``Monitor`` uses.

XML keywords are case-sensitive, so ``<!DocType`` / ``<!EnTiTy`` are not well-formed XML, but
lenient parsers (feedparser's loose parser among them) may still honour them. The fast parser
(``monitor.fastparse``) hands documents to feedparser by looking for a few exact byte strings; these
tests feed mixed-case declarations through ``parse_pool.parse_document`` (what ``Monitor`` calls,
fast path first) and through a real poll, and check that nothing is expanded or read from disk.

Today the fast parser declines every document with a declaration before the root element (its root
pattern), whatever the case, and feedparser's neutralisation (``parse.neutralise_dtd``) matches
case-insensitively; these tests keep it that way whichever of the two changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from monitor.parse import ParsedFeed
from monitor.parse_pool import parse_document
from monitor.store import Item
from tests.misbehaving import monitor_config, running_monitor, serve_bytes
from tests.servers import FeedServer

NOW = datetime(2025, 10, 17, 12, 0, tzinfo=UTC)
SPELLINGS = [
    ("DOCTYPE", "ENTITY"),  # the well-formed spelling: the control (feedparser alone expands it)
    ("DocType", "EnTiTy"),
    ("doctype", "entity"),
    ("DOCTYPE", "EnTiTy"),
    ("DocType", "ENTITY"),
    ("dOcTyPe", "eNtItY"),
]
CONTENT_TYPES = ["application/rss+xml", "text/xml; charset=utf-8", None]


def _laughs(doctype: str, entity: str, levels: int = 9) -> bytes:
    decls = [f'<!{entity} lol0 "lol">'] + [
        f'<!{entity} lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels + 1)
    ]
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<!{doctype} rss [\n'
        + "\n".join(decls)
        + '\n]>\n<rss version="2.0"><channel><title>T</title><link>https://example.org/</link>'
        "<item><guid>lol-1</guid><title>Gipfel &lol9;</title>"
        "<link>https://example.org/artikel/1</link><description>Text &lol9;</description></item>"
        "</channel></rss>"
    ).encode()


def _quadratic(doctype: str, entity: str) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!{doctype} rss [\n<!{entity} a "'.encode()
        + b"A" * 50_000
        + b'">\n]>\n<rss version="2.0"><channel><title>T</title><item><guid>q1</guid><title>'
        + b"&a;" * 20_000
        + b"</title></item></channel></rss>"
    )


def _xxe(doctype: str, entity: str, secret: Path) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!{doctype} rss [<!{entity} xxe SYSTEM "file://{secret}">]>\n'
        '<rss version="2.0"><channel><title>T</title><item><guid>x1</guid>'
        "<title>Gipfel &xxe;</title><description>Text &xxe;</description></item></channel></rss>"
    ).encode()


def _text(parsed: ParsedFeed) -> str:
    return " ".join(f"{e.title} {e.summary} {e.content} {e.url}" for e in parsed.entries)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "geheim.txt"
    path.write_text("GEHEIMER-SCHLUESSEL-4711", encoding="utf-8")
    return path


def _assert_neutralised(parsed: ParsedFeed, label: object) -> None:
    text = _text(parsed)
    assert "lollollol" not in text, label
    assert "AAAAAAAAAA" not in text, label
    assert "GEHEIMER" not in text, label
    assert len(text) < 100_000, (label, len(text))


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize(("doctype", "entity"), SPELLINGS)
def test_mixed_case_declarations_never_expand(
    doctype: str, entity: str, content_type: str | None, secret: Path
) -> None:
    for name, body in (
        ("billion laughs", _laughs(doctype, entity)),
        ("quadratic blowup", _quadratic(doctype, entity)),
        ("xxe", _xxe(doctype, entity, secret)),
        ("billion laughs in UTF-16", _laughs(doctype, entity).decode().encode("utf-16")),
    ):
        label = (name, doctype, entity, content_type)
        started = time.perf_counter()
        parsed = parse_document(body, "https://feeds.example/rss.xml", NOW, content_type)
        # A guard against a hang, not a speed target: unprotected, these take minutes and gigabytes.
        assert time.perf_counter() - started < 10, label
        _assert_neutralised(parsed, label)


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed_server:
        yield feed_server


def test_a_poll_of_a_mixed_case_entity_bomb_stores_nothing_expanded(
    tmp_path: Path, server: FeedServer, secret: Path
) -> None:
    """The whole path: fetch, parse (fast parser or feedparser), store."""
    server.route(
        "/laughs.xml", serve_bytes(_laughs("DocType", "EnTiTy"), {"Content-Type": "application/rss+xml"})
    )
    server.route(
        "/xxe.xml", serve_bytes(_xxe("doctype", "EnTiTy", secret), {"Content-Type": "application/rss+xml"})
    )
    feeds = [
        {"name": "laughs", "url": server.url("/laughs.xml")},
        {"name": "xxe", "url": server.url("/xxe.xml")},
    ]
    config = monitor_config(tmp_path / "db", feeds)
    with running_monitor(config) as (monitor, portal):
        summary = portal.call(monitor.poll)
        assert {r.feed: r.status for r in summary.reports} == {"laughs": "ok", "xxe": "ok"}
        with monitor.store.session() as session:
            rows = list(session.scalars(select(Item)))
    # The entries are kept (feedparser resolves a permalink guid against the feed URL) ...
    assert {row.entry_id.rsplit("/", 1)[-1] for row in rows} == {"lol-1", "x1"}
    for row in rows:  # ... without anything expanded or read from disk
        stored = " ".join(str(v) for v in row.model_dump().values())
        assert "lollollol" not in stored and "GEHEIMER" not in stored, row.entry_id
        assert len(stored) < 100_000


def test_fast_parser_declines_declarations_in_any_letter_case() -> None:
    """The fast path must never see a DTD or entity declaration, whatever its spelling: those
    documents go to the reference path, which neutralises them."""
    from monitor.fastparse import _acceptable_bytes

    plain = (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title></channel></rss>'
    )
    assert _acceptable_bytes(plain, "application/rss+xml")
    for marker in (b"<!DocType rss []>", b'<!EnTiTy a "b">', b"<!doctype rss>", b"<!ENTITY a 'b'>"):
        # After the root element, where the root pattern alone would not notice it.
        body = plain.replace(b"<channel>", b"<channel>" + marker, 1)
        assert not _acceptable_bytes(body, "application/rss+xml"), marker
