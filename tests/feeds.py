"""Feed documents written for the tests (our own German texts), in RSS 2.0, Atom 1.0 and RDF."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape


@dataclass
class FakeEntry:
    guid: str | None
    title: str
    text: str
    link: str | None = None
    published: datetime | None = None
    content: str | None = None  # full text for content:encoded / atom content


def rss(entries: list[FakeEntry], title: str = "Testfeed", ttl: int | None = None) -> str:
    items = []
    for e in entries:
        parts = [f"<title>{escape(e.title)}</title>", f"<description>{escape(e.text)}</description>"]
        if e.link:
            parts.append(f"<link>{escape(e.link)}</link>")
        if e.guid:
            parts.append(f'<guid isPermaLink="false">{escape(e.guid)}</guid>')
        if e.published:
            parts.append(f"<pubDate>{format_datetime(e.published.astimezone(UTC), usegmt=True)}</pubDate>")
        if e.content:
            parts.append(f"<content:encoded><![CDATA[{e.content}]]></content:encoded>")
        items.append("<item>" + "".join(parts) + "</item>")
    ttl_tag = f"<ttl>{ttl}</ttl>" if ttl else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link><description>Test</description>{ttl_tag}"
        + "".join(items)
        + "</channel></rss>"
    )


def atom(entries: list[FakeEntry], title: str = "Atom-Testfeed") -> str:
    out = []
    for e in entries:
        when = (e.published or datetime(2025, 10, 17, tzinfo=UTC)).astimezone(UTC).isoformat()
        link = f'<link rel="alternate" href="{escape(e.link)}"/>' if e.link else ""
        content = f'<content type="html">{escape(e.content)}</content>' if e.content else ""
        out.append(
            f"<entry><id>{escape(e.guid or '')}</id><title>{escape(e.title)}</title>{link}"
            f"<updated>{when}</updated><summary>{escape(e.text)}</summary>{content}</entry>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>urn:test:{escape(title)}</id><updated>2025-10-17T10:00:00Z</updated>"
        + "".join(out)
        + "</feed>"
    )


def rdf(entries: list[FakeEntry], title: str = "RDF-Testfeed") -> str:
    items = "".join(
        f'<item rdf:about="{escape(e.link or "")}"><title>{escape(e.title)}</title>'
        f"<link>{escape(e.link or '')}</link><description>{escape(e.text)}</description>"
        + (f"<dc:date>{e.published.astimezone(UTC).isoformat()}</dc:date>" if e.published else "")
        + "</item>"
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<channel rdf:about="https://example.org/"><title>{escape(title)}</title><link>https://example.org/</link>'
        "<description>Test</description></channel>" + items + "</rdf:RDF>"
    )
