"""Parse stage: feed bytes -> normalised ``Entry`` objects. Pure: no network, no database.

feedparser is the parser (robust against the malformed feeds real outlets serve). It is only ever
given bytes: it must never fetch URLs itself, so the fetch stage's limits and address checks hold.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from monitor.text import NOT_XML_CHAR

log = logging.getLogger(__name__)

# Tracking parameters that make one article look like many.
_TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z_]+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|yclid|igshid|wt_mc|wt\.mc_id|"
    r"ref_src|at_medium|at_campaign|at_custom\d*|at_platform|at_bbc_team|icid|ito|cmpid|ns_mchannel|"
    r"ns_source|ns_campaign|ns_linkname|ns_fee|xtor|_ga|ocid|ftag)$",
    re.IGNORECASE,
)
# An entry dated more than this far after the fetch is treated as undated (clock or feed error).
FUTURE_TOLERANCE = timedelta(days=1)

# Linear time on hostile text: a tag stops at the next '<' as well as at '>' (with "[^>]*", every
# '<' of text full of "<" and no ">" scanned to the end: 46 s for 625 KB, under the interpreter lock
# of the daemon's event loop), and the blocks to drop are cut by ``_drop_blocks``, not a lazy regex.
_TAG_RE = re.compile(r"<[^<>]*>")
_BLOCK_TAG_RE = re.compile(r"<\s*(br|/p|/div|/h[1-6]|/li|/tr|/blockquote|p|div|h[1-6]|li)\b[^<>]*>", re.I)
_DROP_NAMES = ("script", "style", "noscript", "template")
_DROP_OPEN_RE = re.compile(r"<(script|style|noscript|template)\b", re.I)
_DROP_CLOSE_RE = {name: re.compile(rf"</{name}\s*>", re.I) for name in _DROP_NAMES}
# Runs of blanks become one space. Written to match only runs other than a lone space (a run
# that starts with another blank, or a space followed by more): the same result as replacing every
# run, without one replacement per word gap (half of html_to_text's time on plain text).
_WS_RE = re.compile(r"[\t\r\f\v\u00a0][ \t\r\f\v\u00a0]*| [ \t\r\f\v\u00a0]+")
_NL_RE = re.compile(r"\s*\n\s*")


@dataclass(frozen=True, slots=True)
class Entry:
    """One feed entry, normalised. ``entry_id`` is stable across polls of the same feed."""

    entry_id: str
    url: str | None
    title: str
    summary: str  # plain text (teaser)
    content: str  # plain text (full content when the feed carries it, else "")
    published: datetime  # UTC
    published_from_feed: bool  # False when the feed gave no usable date and fetch time was used
    content_hash: str

    @property
    def text(self) -> str:
        """The longest text the feed gave: full content, else the teaser."""
        return self.content if len(self.content) > len(self.summary) else self.summary

    def __reduce__(self) -> tuple[type[Entry], tuple[Any, ...]]:
        # Entries cross from the parse workers in their thousands: pickled as the constructor's
        # arguments instead of dataclasses' generic frozen-slots state (which looks up the fields
        # for every entry), unpickling in the main process takes ~40 % less time.
        return (
            Entry,
            (
                self.entry_id,
                self.url,
                self.title,
                self.summary,
                self.content,
                self.published,
                self.published_from_feed,
                self.content_hash,
            ),
        )


@dataclass(slots=True)
class ParsedFeed:
    entries: list[Entry]
    title: str = ""
    version: str = ""
    ttl_seconds: float | None = None  # RSS <ttl>, a lower bound on the poll interval
    problems: list[str] = field(default_factory=list)  # recovered errors (bozo, duplicates, dates)
    is_feed: bool = True  # False when the bytes are not a feed at all (e.g. an HTML page)
    alternate_links: list[str] = field(default_factory=list)  # feed autodiscovery from HTML
    # Computed by the parse worker (monitor.story_work.analyse_candidates), off the main process,
    # for the entries in which some story's terms occur, under the stories that ``screened`` names
    # (``story_work.payload_key``; None when nothing was screened): per entry id, the rule outcome
    # per story (``match.Prematch.outcomes``), the diff against each story's baseline
    # (``diff.baseline_novelty``), ``diff.novelty.item_sentences`` of its title and text where that
    # diff found news and, when a story needs it for similarity, ``match.prepare``'s document.
    outcomes: dict[str, Any] = field(default_factory=dict)
    novelty: dict[str, Any] = field(default_factory=dict)
    sentences: dict[str, Any] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    screened: str | None = None


def html_to_text(value: str | None) -> str:
    """Plain text from an HTML fragment: tags removed, entities decoded, whitespace tidied."""
    if not value:
        return ""
    if "<" in value:
        value = _drop_blocks(value)
        value = _BLOCK_TAG_RE.sub("\n", value)
        value = _TAG_RE.sub("", value)
    value = html.unescape(value)
    value = value.replace("\u00ad", "")  # soft hyphen
    value = _WS_RE.sub(" ", value)
    if "\n" in value:
        value = _NL_RE.sub("\n", value)
    return value.strip()


_CHAR_REF_RE = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")
_UTF8_DECLARED_RE = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']\s*utf-?8\s*["']""", re.I)
_ANY_DECLARED_RE = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=""", re.I)
_HTTP_CHARSET_RE = re.compile(r"charset\s*=\s*[\"']?([^\s;\"']+)", re.I)


def _is_xml_char(code: int) -> bool:
    return code <= 0x10FFFF and NOT_XML_CHAR.match(chr(code)) is None


def neutralise_char_refs(body: bytes) -> tuple[bytes, str | None]:
    """Character references to what XML does not allow (``&#0;``, a surrogate ``&#xD800;``,
    ``&#x110000;``, a number of any size) replaced by U+FFFD. feedparser raised on the last three,
    losing the whole feed to one item, and a NUL could not be written to PostgreSQL. Both parsers
    get the same bytes."""
    if b"&#" not in body:
        return body, None
    bad = 0

    def replace(m: re.Match[bytes]) -> bytes:
        nonlocal bad
        digits = (m.group(1) or m.group(2)).lstrip(b"0") or b"0"  # "&#x0041;" is "A"
        if len(digits) <= 8 and _is_xml_char(int(digits, 16 if m.group(1) else 10)):
            return m.group(0)
        bad += 1
        return b"&#xFFFD;"

    cleaned = _CHAR_REF_RE.sub(replace, body)
    if not bad:
        return body, None
    return cleaned, f"replaced {bad} character reference(s) to characters XML does not allow"


def _repair_stray_bytes(body: bytes, content_type: str | None) -> tuple[bytes, str | None]:
    """A UTF-8 document with a few bytes that are not UTF-8 (a Latin-1 'ü' pasted into it): feedparser
    would read the whole document as windows-1252 and turn every umlaut into mojibake ('GrÃ¼ÃŸe'),
    rewriting stored items that then no longer match. When the document is UTF-8 by its declaration
    (or has none and the HTTP charset says UTF-8 or nothing) and its valid multi-byte characters
    outnumber the bad bytes, only the bad bytes become U+FFFD. A Latin-1 document without a
    declaration has (next to) no valid multi-byte characters and is left to feedparser's detection."""
    if body.isascii():
        return body, None
    try:
        body.decode("utf-8")
        return body, None
    except UnicodeDecodeError:
        pass
    if _ANY_DECLARED_RE.match(body) and not _UTF8_DECLARED_RE.match(body):
        return body, None  # declared another encoding
    m = _HTTP_CHARSET_RE.search(content_type or "")
    if m and m.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
        return body, None
    text = body.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - body.count("\ufffd".encode())
    good = sum(1 for ch in text if ord(ch) > 0x7F) - text.count("\ufffd")
    if bad <= 0 or good < 3 or good < 2 * bad:
        return body, None
    return text.encode("utf-8"), f"replaced {bad} byte(s) that are not UTF-8 in a UTF-8 document"


def _keep_guids_as_written(feedparser: Any) -> None:
    """feedparser resolves an RSS ``<guid>`` without ``isPermaLink="false"`` against the document's
    URL ("1000" -> "https://host/feed/1000"), the fast parser does not: an item's id then changed
    whenever a feed switched parser paths (one bad character) or was fetched from another URL (a
    redirect, a mirror), and the item was stored again as new. An id is the feed's own token, so
    both keep it as written. (A permalink guid that is the entry's only link is still resolved,
    as a link, in ``parse_feed``.) Process-wide: feedparser is the monitor's alone."""
    mixin = feedparser.mixin._FeedParserMixin
    if "id" in mixin.can_be_relative_uri:
        mixin.can_be_relative_uri = frozenset(mixin.can_be_relative_uri - {"id"})


def ttl_seconds(raw: Any) -> float:
    """RSS ``<ttl>`` (minutes) in seconds. ValueError for what is not a finite number >= 0:
    "NaN", "-inf" or "1e308" minutes would make the next poll's time itself an error."""
    seconds = float(raw) * 60.0
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a time to live: {raw!r}")
    return seconds


def _drop_blocks(value: str) -> str:
    """Script, style, noscript and template elements replaced by a space, each from its opening tag
    to the first closing tag of its name (an unclosed one is left to the tag stripper). Linear: each
    closing tag is searched once, and a name found unclosed is not searched for again."""
    if _DROP_OPEN_RE.search(value) is None:
        return value
    parts: list[str] = []
    kept = pos = 0
    unclosed: set[str] = set()
    while (opening := _DROP_OPEN_RE.search(value, pos)) is not None:
        name = opening.group(1).lower()
        closing = None if name in unclosed else _DROP_CLOSE_RE[name].search(value, opening.end())
        if closing is None:
            unclosed.add(name)  # none after this one, so none after any later one either
            pos = opening.end()
            continue
        parts += (value[kept : opening.start()], " ")
        kept = pos = closing.end()
    parts.append(value[kept:])
    return "".join(parts)


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """Absolute URL without tracking parameters and fragment; scheme and host lower-cased."""
    if not url:
        return None
    url = url.strip()
    if base:
        url = urljoin(base, url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING_PARAMS.match(k)
    ]
    netloc = parts.netloc.lower()
    if netloc.endswith(":80") and parts.scheme.lower() == "http":
        netloc = netloc[:-3]
    elif netloc.endswith(":443") and parts.scheme.lower() == "https":
        netloc = netloc[:-4]
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", urlencode(query), ""))


def _struct_to_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, TypeError, OSError):
        return None


def content_hash(*parts: str | None) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update((part or "").encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()


def _entry_content(raw: Any) -> str:
    contents = raw.get("content") or []
    best = ""
    for c in contents:
        text = html_to_text(c.get("value"))
        if len(text) > len(best):
            best = text
    return best


_ALT_LINK_RE = re.compile(r"<link\b[^>]*>", re.I)
_ATTR_RE = re.compile(r"""([a-zA-Z-]+)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""")


def discover_feed_links(body: bytes, base_url: str) -> list[str]:
    """Feed URLs announced by an HTML page (``<link rel="alternate" type="application/rss+xml">``)."""
    text = body[: 512 * 1024].decode("utf-8", "replace")
    found: list[str] = []
    for tag in _ALT_LINK_RE.findall(text):
        attrs = {k.lower(): v.strip("\"'") for k, v in _ATTR_RE.findall(tag)}
        rel = attrs.get("rel", "").lower().split()
        kind = attrs.get("type", "").lower()
        if (
            "alternate" in rel
            and ("rss" in kind or "atom" in kind or kind.endswith("+xml"))
            and attrs.get("href")
        ):
            url = urljoin(base_url, html.unescape(attrs["href"]))
            if url not in found:
                found.append(url)
    return found


# (leading bytes, codec): with a BOM the generic codec reads the byte order from it.
_UTF16_32 = (
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\xfe\xff", "utf-16"),
    (b"\xff\xfe", "utf-16"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)
_XML_DECL_ENCODING_RE = re.compile(rb"""^(\s*<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""", re.I)
_DECL_START_RE = re.compile(rb"<!(DOCTYPE|ENTITY)\b", re.I)


def _to_ascii_compatible(body: bytes) -> bytes:
    """UTF-16/32 documents re-encoded as UTF-8, so byte-level scans of the markup work."""
    for lead, codec in _UTF16_32:
        if body.startswith(lead):
            text = body.decode(codec, "replace").lstrip("\ufeff")
            return _XML_DECL_ENCODING_RE.sub(rb"\1\2utf-8\2", text.encode("utf-8"), count=1)
    return body


def _declaration_end(body: bytes, start: int) -> int:
    """Index just past the ``<!DOCTYPE ...>`` / ``<!ENTITY ...>`` starting at ``start``: quotes,
    comments and a bracketed internal subset are skipped, so ``>`` inside an entity value does not
    end it. Returns ``len(body)`` when the declaration never ends."""
    i, depth, quote, n = start + 2, 0, 0, len(body)
    while i < n:
        c = body[i]
        if quote:
            if c == quote:
                quote = 0
        elif body.startswith(b"<!--", i):
            end = body.find(b"-->", i + 4)
            if end < 0:
                return n
            i = end + 3
            continue
        elif c in (0x22, 0x27):  # " '
            quote = c
        elif c == 0x5B:  # [
            depth += 1
        elif c == 0x5D:  # ]
            depth = max(0, depth - 1)
        elif c == 0x3E and depth == 0:  # >
            return i + 1
        i += 1
    return n


def neutralise_dtd(body: bytes) -> tuple[bytes, str | None]:
    """Remove DOCTYPE internal subsets and ENTITY declarations before feedparser sees the bytes.

    Why: feedparser keeps "safe" internal entities and, when expat rejects a document, re-parses it
    with its loose parser, which expands them without expat's amplification limits: a 200 KB feed
    with one 50 KB entity referenced 50,000 times takes minutes and gigabytes. External entities
    (XXE) are not fetched by feedparser, but removing every declaration makes both impossible by
    construction, whatever the parser. A plain ``<!DOCTYPE rss>`` without a subset is kept."""
    body = _to_ascii_compatible(body)
    if b"<!" not in body:
        return body, None
    removed = False
    out: list[bytes] = []
    pos = 0
    for m in _DECL_START_RE.finditer(body):
        if m.start() < pos:
            continue  # inside a declaration already removed
        end = _declaration_end(body, m.start())
        decl = body[m.start() : end]
        if m.group(1).upper() == b"DOCTYPE" and b"[" not in decl and b"<!ENTITY" not in decl.upper():
            continue  # harmless: no internal subset
        out.append(body[pos : m.start()])
        pos = end
        removed = True
    if not removed:
        return body, None
    out.append(body[pos:])
    return b"".join(
        out
    ), "removed a DOCTYPE internal subset / ENTITY declarations (never expanded, for safety)"


# feedparser's own pattern for the encoding in the XML declaration; it decodes the value as UTF-8
# and raises on anything else, so the value is cleaned first (see ``_clean_declared_encoding``).
_FEEDPARSER_PI_ENCODING_RE = re.compile(rb"""^(<\?.*encoding=['"])(.*?)(['"].*\?>)""")


def _clean_declared_encoding(body: bytes) -> tuple[bytes, str | None]:
    """An encoding name in the XML declaration that is not ASCII (a mangled or hostile feed) would
    crash feedparser (UnicodeDecodeError); drop the bad bytes and say so."""
    m = _FEEDPARSER_PI_ENCODING_RE.match(body)
    if m is None or m.group(2).isascii():
        return body, None
    cleaned = bytes(b for b in m.group(2) if b < 0x80)
    return (
        m.group(1) + cleaned + m.group(3) + body[m.end() :],
        f"ignored non-ASCII bytes in the declared encoding {m.group(2)[:40]!r}",
    )


def build_entry(
    raw_entry: Any,
    entry_id: str,
    link: str | None,
    title: str,
    summary: str,
    content: str,
    fetched_at: datetime,
    problems: list[str],
    *,
    strict_dates: bool = False,
) -> Entry | None:
    """The ``Entry`` for one parsed entry, dated from the feed (published, else updated); a date far
    in the future, or none, means fetch time. Shared by the reference and the fast parser so both
    build entries the same way. With ``strict_dates`` a date string that did not parse gives None
    (the fast parser then hands the document to the reference parser)."""
    published = _struct_to_datetime(raw_entry.get("published_parsed")) or _struct_to_datetime(
        raw_entry.get("updated_parsed")
    )
    from_feed = published is not None
    if published is not None and published > fetched_at + FUTURE_TOLERANCE:
        problems.append(
            f"entry {entry_id[:200]!r} is dated in the future ({published.isoformat()}); used fetch time"
        )
        published, from_feed = None, False
    if published is None:
        if strict_dates and (raw_entry.get("published") or raw_entry.get("updated")):
            return None
        published = fetched_at
    if (
        "\x00" in title
        or "\x00" in summary
        or "\x00" in content
        or "\x00" in entry_id
        or "\x00" in (link or "")
    ):
        # A raw NUL byte the parser let through: no text column of PostgreSQL can hold it.
        title, summary, content, entry_id = (
            v.replace("\x00", "") for v in (title, summary, content, entry_id)
        )
        link = link.replace("\x00", "") if link else link
    return Entry(
        entry_id=entry_id[:1000],
        url=link,
        title=title,
        summary=summary,
        content=content,
        published=published,
        published_from_feed=from_feed,
        content_hash=content_hash(title, summary, content, link),
    )


def parse_feed(
    body: bytes,
    *,
    url: str,
    fetched_at: datetime,
    content_type: str | None = None,
) -> ParsedFeed:
    """Parse feed bytes. Never raises on bad input: problems are reported in ``ParsedFeed``."""
    body, dtd_problem = neutralise_dtd(body)
    body, encoding_problem = _clean_declared_encoding(body)
    body, reference_problem = neutralise_char_refs(body)
    body, stray_problem = _repair_stray_bytes(body, content_type)
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    # sanitize_html and resolve_relative_uris are off: we reduce everything to plain text anyway and
    # escape wherever text is rendered, and the two passes cost a large share of feedparser's time.
    problems: list[str] = [p for p in (dtd_problem, encoding_problem, reference_problem, stray_problem) if p]
    # Imported on first use (~12 ms): the fast parser takes most feeds, and a poll in which nothing
    # changed parses none.
    import feedparser

    _keep_guids_as_written(feedparser)

    try:
        raw = feedparser.parse(
            body,
            response_headers=headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # feedparser bugs on hostile bytes must not stop the poll
        log.warning("feedparser failed", extra={"url": url, "error": f"{type(exc).__name__}: {exc}"})
        return ParsedFeed(
            entries=[],
            problems=[*problems, f"not a feed (the parser failed: {type(exc).__name__}: {exc})"[:500]],
            is_feed=False,
        )
    feed_meta = raw.get("feed", {})
    if raw.get("bozo"):
        exc = raw.get("bozo_exception")
        problems.append(f"malformed feed ({type(exc).__name__}: {exc})"[:500])
    version = raw.get("version") or ""
    if not version and not raw.entries:
        head = body[:2048].lstrip().lower()
        is_html = head.startswith((b"<!doctype html", b"<html")) or b"<html" in head
        return ParsedFeed(
            entries=[],
            problems=[*problems, "not a feed" + (" (an HTML page)" if is_html else "")],
            is_feed=False,
            alternate_links=discover_feed_links(body, url) if is_html else [],
        )
    ttl: float | None = None
    try:
        if feed_meta.get("ttl"):
            ttl = ttl_seconds(feed_meta["ttl"])
    except (TypeError, ValueError):
        problems.append(f"ignored invalid <ttl> {feed_meta.get('ttl')!r}")

    entries: list[Entry] = []
    seen: set[str] = set()
    base = feed_meta.get("link") or url
    for raw_entry in raw.entries:
        title = html_to_text(raw_entry.get("title"))
        summary = html_to_text(raw_entry.get("summary"))
        content = _entry_content(raw_entry)
        if content == summary:
            content = ""
        # A permalink guid standing in for a missing <link> is resolved against the document
        # (feedparser no longer resolves it as an id: _keep_guids_as_written).
        link = canonical_url(raw_entry.get("link"), url if raw_entry.get("guidislink") else base)
        guid = (raw_entry.get("id") or "").replace("\x00", "").strip()  # NUL: see build_entry
        entry_id = guid or link or "hash:" + content_hash(title, summary, content)
        if entry_id in seen:
            problems.append(f"duplicate entry id {entry_id[:200]!r} (kept the first)")
            continue
        seen.add(entry_id)
        entry = build_entry(raw_entry, entry_id, link, title, summary, content, fetched_at, problems)
        assert entry is not None  # only a strict_dates caller gets None
        entries.append(entry)
    return ParsedFeed(
        entries=entries,
        title=html_to_text(feed_meta.get("title")),
        version=version,
        ttl_seconds=ttl,
        problems=problems,
    )
