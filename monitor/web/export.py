"""A story's developments as Atom 1.0 (RFC 4287), JSON or CSV: for feed readers and spreadsheets.

Entry ids are ``urn:uuid`` values derived from the story id and the development's deterministic
key, so they stay the same across restarts, re-polls and a rebuilt database.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from monitor.text import xml_chars
from monitor.web.views import display_zone, safe_url

ATOM_NS = "http://www.w3.org/2005/Atom"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/story-monitor/story-monitor")
GENERATOR_URI = "https://github.com/story-monitor/story-monitor"


def development_uuid(story_id: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'development/{story_id}/{key}')}"


def story_uuid(story_id: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'story/{story_id}')}"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_ENTRY_HTML = Environment(autoescape=True).from_string(
    """<p><strong>New:</strong></p><ul>{% for s in novel %}<li>{{ s }}</li>{% endfor %}</ul>
<p><strong>Sources</strong> ({{ sources|length }}):</p><ul>{% for src in sources %}<li>{{ src.feed }}, {{ src.when }}{% if src.first %} (first){% endif %}: {% if src.href %}<a href="{{ src.href }}">{{ src.title }}</a>{% else %}{{ src.title }}{% endif %}</li>{% endfor %}</ul>"""
)


def _entry_html(dev: dict[str, Any]) -> str:
    zone = display_zone()
    sources = [
        {
            "feed": s["feed"],
            "title": s["title"] or s["url"] or "",
            "href": safe_url(s["url"]),
            "when": s["published"].astimezone(zone).strftime("%d.%m.%Y %H:%M"),
            "first": i == 0,
        }
        for i, s in enumerate(dev["sources"])
    ]
    return _ENTRY_HTML.render(novel=dev["novel"], sources=sources)


def developments_atom(
    story_id: str,
    story_title: str,
    devs: Sequence[dict[str, Any]],
    *,
    self_url: str | None = None,
    alternate_url: str | None = None,
) -> bytes:
    """An Atom 1.0 feed of a story's developments, newest first. ElementTree escapes all text, but
    writes characters XML does not allow as they are: feed text may carry them, and one would make
    the whole feed unreadable for every subscriber (``xml_chars``)."""
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", {k: xml_chars(v) for k, v in attrs.items()})
        if text is not None:
            el.text = xml_chars(text)
        return el

    ordered = sorted(devs, key=lambda d: (d["first_seen"], d["id"]), reverse=True)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", story_uuid(story_id))
    sub(feed, "title", f"{story_title}: developments")
    sub(
        feed, "subtitle", "New facts in the story, against the baseline and the story so far (story-monitor)."
    )
    updated = max((d["updated_at"] or d["first_seen"] for d in ordered), default=None)
    sub(feed, "updated", iso(updated or datetime(1970, 1, 1, tzinfo=UTC)))
    author = sub(feed, "author")
    sub(author, "name", "story-monitor")
    sub(feed, "generator", "story-monitor", uri=GENERATOR_URI)
    if self_url:
        sub(feed, "link", rel="self", type="application/atom+xml", href=self_url)
    if alternate_url:
        sub(feed, "link", rel="alternate", type="text/html", href=alternate_url)
    for dev in ordered:
        entry = sub(feed, "entry")
        sub(entry, "id", development_uuid(dev["story"], dev["key"]))
        sub(entry, "title", dev["title"])
        sub(entry, "published", iso(dev["first_seen"]))
        sub(entry, "updated", iso(dev["updated_at"] or dev["first_seen"]))
        first = next((safe_url(s["url"]) for s in dev["sources"] if safe_url(s["url"])), None)
        link = f"{alternate_url}#dev-{dev['id']}" if alternate_url else first
        if link:
            sub(entry, "link", rel="alternate", type="text/html", href=link)
        for src in dev["sources"]:
            href = safe_url(src["url"])
            if href and href != link:
                sub(entry, "link", rel="related", type="text/html", href=href, title=src["feed"])
        sub(entry, "category", term=dev["story"])
        sub(entry, "summary", " ".join(dev["novel"])[:1000] or dev["title"], type="text")
        sub(entry, "content", _entry_html(dev), type="html")
    ET.indent(feed)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(
        feed, encoding="utf-8", xml_declaration=False
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def developments_json(devs: Sequence[dict[str, Any]]) -> str:
    """The ``monitor developments --json`` shape, plus each development's stable ``uid``."""
    rows = [{**d, "uid": development_uuid(d["story"], d["key"])} for d in devs]
    return json.dumps(rows, ensure_ascii=False, indent=2, default=_json_default) + "\n"


CSV_COLUMNS = [
    "id",
    "uid",
    "story",
    "first_seen",
    "updated",
    "score",
    "title",
    "novel",
    "source_count",
    "first_source_feed",
    "first_source_url",
    "source_urls",
]


def _cell(value: Any) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas: feed text must never do that."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def developments_csv(devs: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for d in devs:
        first = d["sources"][0] if d["sources"] else None
        writer.writerow(
            [
                d["id"],
                development_uuid(d["story"], d["key"]),
                _cell(d["story"]),
                iso(d["first_seen"]),
                iso(d["updated_at"] or d["first_seen"]),
                f"{d['score']:.3f}",
                _cell(d["title"]),
                _cell("\n".join(d["novel"])),
                len(d["sources"]),
                _cell(first["feed"] if first else ""),
                _cell(first["url"] if first else ""),
                _cell(" ".join(s["url"] or "" for s in d["sources"])),
            ]
        )
    return out.getvalue()
