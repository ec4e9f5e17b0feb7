"""Full text: fetch the article page of a matched teaser-only item and extract the article text.

trafilatura is the extractor (maintained, benchmarked best on German news pages; it removes
navigation, teasers of other articles and comment sections). The fetch goes through
``Fetcher.fetch_article``: http(s) only, no private addresses unless
``fetch.allow_private_addresses``, the configured timeout and size cap. When anything fails the
item keeps its teaser and ``fulltext_status`` records why ("failed: <reason>").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from monitor.fetch import Fetcher

log = logging.getLogger(__name__)

MIN_EXTRACTED_CHARS = 200  # less than this is a cookie wall or a paywall stub, not an article


@dataclass(frozen=True, slots=True)
class FullText:
    text: str | None  # the article text, or None when the teaser stays
    status: str  # "ok" | "failed: <why>"


def _decode(body: bytes, content_type: str | None) -> str:
    charset = None
    if content_type and "charset=" in content_type:
        charset = content_type.split("charset=", 1)[1].split(";")[0].strip().strip('"') or None
    for encoding in (charset, "utf-8", "cp1252"):
        if not encoding:
            continue
        try:
            return body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("utf-8", errors="replace")


def extract_article(html: str, url: str | None = None, teaser: str = "") -> FullText:
    """Article text from an HTML page (pure). Shorter than the teaser or than a few lines ->
    failed, the teaser stays."""
    import trafilatura

    try:
        text = trafilatura.extract(
            html,
            url=url,
            include_comments=False,
            include_tables=False,
            favor_precision=True,
            deduplicate=True,
        )
    except Exception as exc:  # trafilatura raises a variety of parser errors on hostile pages
        return FullText(None, f"failed: extraction error: {type(exc).__name__}: {exc}"[:300])
    if not text:
        return FullText(None, "failed: no article text found on the page")
    text = text.strip()
    if len(text) < MIN_EXTRACTED_CHARS or len(text) <= len(teaser):
        return FullText(None, f"failed: extracted text too short ({len(text)} characters)")
    return FullText(text, "ok")


async def fetch_fulltext(fetcher: Fetcher, url: str | None, teaser: str = "") -> FullText:
    if not url:
        return FullText(None, "failed: the item has no link")
    result = await fetcher.fetch_article(url)
    if not result.ok or result.body is None:
        return FullText(None, f"failed: {result.error_kind or 'http'}: {result.error or result.status}"[:300])
    ctype = (result.content_type or "").lower()
    if ctype and "html" not in ctype and "xml" not in ctype and "text/plain" not in ctype:
        return FullText(None, f"failed: not an HTML page ({ctype.split(';')[0]})")
    html = _decode(result.body, result.content_type)
    if "text/plain" in ctype:
        text = html.strip()
        return (
            FullText(text, "ok") if len(text) > len(teaser) else FullText(None, "failed: page text too short")
        )
    return await anyio.to_thread.run_sync(extract_article, html, result.final_url, teaser)


async def fetch_many(
    fetcher: Fetcher, requests: Sequence[tuple[str, str | None, str]]
) -> dict[str, FullText]:
    """Fetch full texts for (key, url, teaser) concurrently (the fetcher bounds the concurrency)."""
    out: dict[str, FullText] = {}

    async def one(key: str, url: str | None, teaser: str) -> None:
        try:
            out[key] = await fetch_fulltext(fetcher, url, teaser)
        except Exception as exc:  # never let one article break the poll
            log.warning("full text failed", extra={"url": url, "error": repr(exc)})
            out[key] = FullText(None, f"failed: {type(exc).__name__}: {exc}"[:300])

    async with anyio.create_task_group() as tg:
        for key, url, teaser in requests:
            tg.start_soon(one, key, url, teaser)
    return out
