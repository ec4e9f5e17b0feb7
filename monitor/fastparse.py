"""A fast path for the parse stage: ``feedparser-rs`` (a feedparser-compatible parser in Rust).

feedparser stays the reference parser. This module only takes the documents it is sure about:
well-formed RSS 2.0 / RSS 1.0 / Atom 1.0 in an ASCII-compatible encoding, without DTD declarations,
which ``feedparser-rs`` parses without complaint. Anything else (a bozo flag, an unknown version,
an HTTP charset that disagrees with the document, UTF-16/32, replacement characters, ...) returns
``None`` and the caller falls back to ``monitor.parse.parse_feed``. ``tests/test_fastparse.py``
checks on a large generated corpus and on malformed documents that both paths give identical
normalised entries.

Why it pays: on the benchmark corpus (22,321 entries) feedparser takes ~5 s of one core,
feedparser-rs ~0.15 s. The normalisation (plain text, canonical URL, ids, dates) is the same code.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from monitor.parse import (
    Entry,
    ParsedFeed,
    build_entry,
    canonical_url,
    content_hash,
    html_to_text,
    neutralise_char_refs,
    ttl_seconds,
)

try:  # an optional accelerator: without it everything goes through feedparser
    import feedparser_rs as _fprs
except ImportError:  # pragma: no cover - depends on the platform's wheels
    _fprs = None

AVAILABLE = _fprs is not None

# Versions whose normalised output the differential test covers.
_ACCEPTED_VERSIONS = {"rss20", "rss10", "atom10"}
# Encodings both parsers decode the same way (feedparser-rs reports ISO-8859-1 as windows-1252).
_SAFE_ENCODINGS = {"utf-8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252"}
_XML_DECL_RE = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._-]+)""", re.I)
# Markup where the two parsers are known (or not proven) to differ: DTDs and entity declarations,
# XInclude, xml:base (relative links), and the encodings checked below.
# Matched case-insensitively, so a mixed-case "<!DocType" or "<!EnTiTy" is declined too (the
# reference path neutralises such declarations; this parser must never see them).
_RISKY_MARKUP = (b"<!doctype", b"<!entity", b"xml:base")
# Element names where the two parsers pick differently (found by a differential audit of documents
# the fast path took): feedparser reads itunes:summary as the entry's content and an RSS xhtml:body as
# its summary; element names in other than lower case are read by feedparser only.
_DIFFERING_MARKUP = (b"<itunes:summary", b":body>")
_CASED_ELEMENT_RE = re.compile(
    rb"</?(?:Title|TITLE|Link|LINK|Guid|GUID|Item|ITEM|Description|DESCRIPTION|PubDate|PUBDATE|Channel|CHANNEL)\b"
)
_ITEM_OPEN_RE = re.compile(rb"<item[\s>]")
_RSS20_VERSION_RE = re.compile(rb"""<rss\b[^>]*\bversion\s*=\s*["']2\.0["']""")
_XML_MEDIA_TYPES = {"application/xml", "text/xml"}
_XML_ROOT_RE = re.compile(rb"^\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(rss|feed|rdf:RDF)\b", re.S)


# An absolute http(s) URL already in canonical form: lower-case scheme and host, no port, userinfo,
# query, fragment, parameters or backslashes. ``canonical_url`` returns such a URL unchanged (urljoin
# keeps an absolute URL with a host as it is), so the urllib round trips can be skipped.
_CANONICAL_URL_RE = re.compile(r"^https?://[a-z0-9.-]+/[A-Za-z0-9._~!$&'()*+,=:@%/-]*$")


def fast_canonical_url(url: str | None, base: str | None = None) -> str | None:
    """``canonical_url`` with a shortcut for URLs that are canonical already (most feed links)."""
    if url and _CANONICAL_URL_RE.match(url):
        return url
    return canonical_url(url, base)


def _is_relative(value: str) -> bool:
    """A relative URL (no scheme): feedparser resolves links and permalink guids against the document."""
    if _CANONICAL_URL_RE.match(value):
        return False  # http(s) with a plain host: urlsplit finds the scheme (and cannot fail)
    try:
        return bool(value) and not urlsplit(value).scheme
    except ValueError:
        return True


def _declared_encoding(body: bytes) -> str:
    m = _XML_DECL_RE.match(body[:512])
    return m.group(1).decode("ascii").lower() if m else "utf-8"


def _acceptable_bytes(body: bytes, content_type: str | None) -> bool:
    if not body or body.startswith((b"\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe")):
        return False  # empty, or a BOM (UTF-8 BOM included: let the reference parser handle it)
    if not _XML_ROOT_RE.match(body[:4096]):
        return False  # not plainly an RSS/Atom/RDF document (HTML pages, JSON, junk)
    if b"\x00" in body:
        return False
    # bytes.lower() folds ASCII letters only, as a case-insensitive bytes regex would, and three
    # substring searches of the lowered body take ~1/8 of that regex's time.
    lowered = body.lower()
    if any(markup in lowered for markup in _RISKY_MARKUP):
        return False
    declared = _declared_encoding(body)
    if declared not in _SAFE_ENCODINGS:
        return False
    if not content_type:
        return False  # feedparser flags a missing Content-Type as a problem: let it word it
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in _XML_MEDIA_TYPES and not media.endswith("+xml"):
        return False  # text/html, text/plain, ...: feedparser's content-type rules decide
    m = _CHARSET_RE.search(content_type)
    if m and m.group(1).lower() != declared:
        return False  # HTTP and XML disagree: feedparser's RFC 3023 rules decide
    try:
        body.decode("utf-8")
        valid_utf8 = True
    except UnicodeDecodeError:
        valid_utf8 = False
    if declared in ("utf-8", "us-ascii", "ascii"):
        return valid_utf8  # mislabelled bytes: feedparser's encoding fallbacks decide
    # Declared Latin-1 but the bytes are UTF-8 (non-ASCII): feedparser's guessing decides.
    return not (valid_utf8 and not body.isascii())


def _parsers_differ(body: bytes, raw: Any) -> bool:
    """Document-level shapes where feedparser reads something else than feedparser-rs (each found
    by the differential test): the markup above, an item-level atom:link (feedparser takes it as the
    link), items repeating their title or description (feedparser keeps the first), items outside
    the channel or otherwise not all read, an <rss> without version="2.0"."""
    if any(markup in body for markup in _DIFFERING_MARKUP) or _CASED_ELEMENT_RE.search(body):
        return True
    if raw.version == "atom10":
        return False
    first = _ITEM_OPEN_RE.search(body)  # "<item>" or "<item ...>", not RSS 1.0's "<items>"
    if first is not None and body.find(b"<atom:link", first.start()) != -1:
        return True
    items = body.count(b"</item>")
    if items != len(raw.entries):
        return True
    # An item repeating its title or description (feedparser keeps the first): item by item, since
    # one item with two and another with none add up like one each.
    for segment in body.split(b"</item>")[:-1]:
        opening = _ITEM_OPEN_RE.search(segment)
        item = segment[opening.start() :] if opening is not None else segment
        if item.count(b"<title") > 1 or item.count(b"<description") > 1:
            return True
    return raw.version == "rss20" and _RSS20_VERSION_RE.search(body[:4096]) is None


def _alternates(raw_entry: Any) -> int:
    return sum(1 for link in raw_entry.get("links") or () if (link.get("rel") or "alternate") == "alternate")


def _entry_content(raw: Any) -> str:
    best = ""
    for c in raw.get("content") or []:
        text = html_to_text(getattr(c, "value", None))
        if len(text) > len(best):
            best = text
    return best


def parse_feed_fast(
    body: bytes,
    *,
    url: str,
    fetched_at: datetime,
    content_type: str | None = None,
) -> ParsedFeed | None:
    """Parse with feedparser-rs, or return ``None`` when the document needs the reference parser.

    Produces exactly what ``monitor.parse.parse_feed`` produces for the documents it accepts."""
    if _fprs is None or not _acceptable_bytes(body, content_type):
        return None
    body, reference_problem = neutralise_char_refs(body)
    if reference_problem is not None:
        return None  # the reference parser reads the same bytes and words the problem
    try:
        raw = _fprs.parse(body, sanitize_html=False, resolve_relative_uris=False)
    except Exception:
        return None
    if raw.bozo or raw.version not in _ACCEPTED_VERSIONS or _parsers_differ(body, raw):
        return None
    feed_meta = raw.feed
    problems: list[str] = []
    ttl: float | None = None
    ttl_raw = feed_meta.get("ttl")
    if ttl_raw:
        try:
            ttl = ttl_seconds(ttl_raw)
        except (TypeError, ValueError):
            return None  # the reference parser words the problem

    entries: list[Entry] = []
    seen: set[str] = set()
    base = feed_meta.get("link") or url
    for raw_entry in raw.entries:
        title = html_to_text(raw_entry.get("title"))
        summary = html_to_text(raw_entry.get("summary"))
        content = _entry_content(raw_entry)
        if content == summary:
            content = ""
        if "\ufffd" in title or "\ufffd" in summary or "\ufffd" in content:
            return None  # a decoding problem: the reference parser reports it
        raw_link = raw_entry.get("link")
        if raw_link and "&amp;" in raw_link:
            return None  # a doubly escaped '&': feedparser unescapes it once more
        if raw.version == "atom10" and _alternates(raw_entry) > 1:
            return None  # feedparser prefers the text/html one
        if raw.version == "rss10" and raw_entry.get("content"):
            return None  # RSS 1.0 content:encoded: feedparser keeps it as the summary
        if raw_link == "":
            # feedparser-rs blanks links to loopback/private addresses (and keeps <link></link>
            # empty): feedparser keeps them, and the fetch stage decides what may be fetched.
            return None
        guid = (raw_entry.get("id") or "").strip()
        if _is_relative(raw_link or "") or (raw_entry.get("guidislink") and _is_relative(guid)):
            return None  # feedparser resolves relative links against the document: let it
        link = fast_canonical_url(raw_link, base)
        entry_id = guid or link or "hash:" + content_hash(title, summary, content)
        if entry_id in seen:
            problems.append(f"duplicate entry id {entry_id[:200]!r} (kept the first)")
            continue
        seen.add(entry_id)
        entry = build_entry(
            raw_entry, entry_id, link, title, summary, content, fetched_at, problems, strict_dates=True
        )
        if entry is None:
            return None  # a date string it could not read: let the reference parser try
        entries.append(entry)
    return ParsedFeed(
        entries=entries,
        title=html_to_text(feed_meta.get("title")),
        version=raw.version,
        ttl_seconds=ttl,
        problems=problems,
    )
