"""Load a story's baseline text from ``path``, ``text`` or ``url`` (I/O at the edge)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the CLI imports BaselineError for every command; httpx only where fetched
    from monitor.config import Config, StoryConfig
    from monitor.fetch import Fetcher

log = logging.getLogger(__name__)


class BaselineError(Exception):
    pass


class BaselineCopies(Protocol):
    """Where the last fetched text of a URL baseline is kept (``monitor.store.Store``)."""

    def save_baseline_copy(self, url: str, text: str) -> None: ...

    def baseline_copy(self, url: str) -> tuple[str, datetime] | None: ...


def load_baseline_text(config: Config, story: StoryConfig) -> str | None:
    """The baseline article text, or None when the story has none. ``url`` baselines are fetched
    by the pipeline (it owns the HTTP client) and passed in through ``Monitor``."""
    baseline = story.baseline
    if baseline is None:
        return None
    if baseline.text is not None:
        return baseline.text
    if baseline.path is not None:
        path = config.resolve_path(baseline.path)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BaselineError(
                f"{config.source}: stories[{story.id}].baseline.path: file not found: {path}"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineError(
                f"{config.source}: stories[{story.id}].baseline.path: cannot read {path}: {exc}"
            ) from None
    return None


class OpenedOnce:
    """``copies`` for the CLI: the store opened on first need (a URL baseline), closed by ``close``."""

    def __init__(self, open_store: Callable[[], BaselineCopies]) -> None:
        self._open = open_store
        self._store: BaselineCopies | None = None

    def __call__(self) -> BaselineCopies:
        if self._store is None:
            self._store = self._open()
        return self._store

    def close(self) -> None:
        close = getattr(self._store, "close", None)
        if close is not None:
            close()


class ReadOnlyCopies:
    """``copies`` for a command that writes nothing (``monitor match``): an earlier copy is read
    from the database if there is one; nothing is stored, no database is created."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._store: Any = None

    def __call__(self) -> ReadOnlyCopies:
        return self

    def baseline_copy(self, url: str) -> tuple[str, datetime] | None:
        from monitor.store import Store
        from monitor.store.database import missing_sqlite_file

        if missing_sqlite_file(self.database):
            return None  # no database yet: no copy, and none is made here
        if self._store is None:
            self._store = Store(self.database)
        return self._store.baseline_copy(url)

    def save_baseline_copy(self, url: str, text: str) -> None:
        return None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


async def fetch_baseline_text(
    config: Config,
    story: StoryConfig,
    fetcher: Fetcher | None,
    copies: Callable[[], BaselineCopies] | None = None,
) -> str | None:
    """Like ``load_baseline_text``, and a ``url`` baseline is fetched through the Fetcher (the
    configured limits; the URL is the user's own, so it may be an intranet address) and its
    article text extracted with trafilatura.

    ``copies`` (the store, opened on first need): each fetched text is kept there, and when the page
    cannot be fetched (the site is down, the network not up yet at boot) the last copy stands in,
    with a warning: one unreachable article must not stop the polling of every feed. Without a
    copy, that is an error (``BaselineError``)."""
    baseline = story.baseline
    if baseline is None or baseline.url is None:
        return load_baseline_text(config, story)
    import anyio

    url = baseline.url
    try:
        text = await _fetch_article(config, story, url, fetcher)
    except BaselineError as exc:
        copy = await anyio.to_thread.run_sync(_stored_copy, copies, url)
        if copy is None:
            raise BaselineError(f"{exc} (and no earlier copy of it is stored)") from None
        text, fetched_at = copy
        log.warning(
            "baseline: cannot fetch the article; using the copy fetched earlier",
            extra={"story": story.id, "url": url, "fetched_at": fetched_at.isoformat(), "error": str(exc)},
        )
        return text
    if copies is not None:
        await anyio.to_thread.run_sync(_keep_copy, copies, url, text, story.id)
    return text


def _stored_copy(copies: Callable[[], BaselineCopies] | None, url: str) -> tuple[str, datetime] | None:
    if copies is None:
        return None
    try:
        return copies().baseline_copy(url)
    except Exception:  # no database yet, or one that cannot be read: as if there were no copy
        log.debug("no stored baseline copy", exc_info=True)
        return None


def _keep_copy(copies: Callable[[], BaselineCopies], url: str, text: str, story_id: str) -> None:
    try:
        copies().save_baseline_copy(url, text)
    except Exception as exc:  # the fetched text is used all the same
        log.warning(
            "baseline: cannot store a copy of the article",
            extra={"story": story_id, "url": url, "error": f"{type(exc).__name__}: {exc}"},
        )


async def _fetch_article(config: Config, story: StoryConfig, url: str, fetcher: Fetcher | None) -> str:
    if fetcher is None:
        raise BaselineError(f"{config.source}: stories[{story.id}].baseline.url: no HTTP client")
    from monitor.fulltext import _decode, extract_article

    where = f"{config.source}: stories[{story.id}].baseline.url"
    result = await fetcher.get(url, {"Accept": "text/html,text/plain;q=0.9,*/*;q=0.5"})
    if not result.ok or result.body is None:
        raise BaselineError(f"{where}: cannot fetch {url}: {result.error_kind}: {result.error}")
    page = _decode(result.body, result.content_type)
    if "text/plain" in (result.content_type or ""):
        return page
    extracted = extract_article(page, result.final_url)
    if extracted.text is None:
        raise BaselineError(f"{where}: no article text in {url} ({extracted.status})")
    return extracted.text
