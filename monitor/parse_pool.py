"""Where feeds are parsed: the fast parser first, feedparser as the fallback, on all cores.

``parse_document`` is the parse stage's entry point for the pipeline: ``monitor.fastparse`` takes
the documents it is sure about, ``monitor.parse.parse_feed`` (feedparser) everything else.

``ParsePool`` runs it off the event loop. The fast parser runs in a thread: ~1 ms for a typical
feed, less than pickling its result from another process would cost (measured: with every parse in
the pool, pickling was ~15 % of a cold poll's CPU). Documents that need feedparser (~0.4 ms per
entry) go to a process pool with one worker per core when several wait at once (the first poll of
many feeds, a poll where many changed) or the body is large, so the slow parser uses every core
while the main process keeps fetching and writing; a single small one stays in a thread. The pool
is started on first need and kept until ``close``. If it cannot start or breaks (a worker killed, a result that
cannot be pickled), parsing goes on in threads: a broken pool never loses a poll.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from pickle import PicklingError

import anyio

from monitor.fastparse import parse_feed_fast
from monitor.parse import ParsedFeed, parse_feed

log = logging.getLogger(__name__)

# A feedparser parse goes to the process pool when at least this many are waiting or running...
POOL_MIN_CONCURRENT = 2
# ... or when the body alone is this large (feedparser needs ~1 s per MB).
POOL_MIN_BYTES = 512 * 1024


def parse_document(
    body: bytes, url: str, fetched_at: datetime, content_type: str | None = None
) -> ParsedFeed:
    """Parse feed bytes: the fast parser when it accepts the document, else feedparser."""
    parsed = parse_feed_fast(body, url=url, fetched_at=fetched_at, content_type=content_type)
    if parsed is not None:
        return parsed
    return parse_feed(body, url=url, fetched_at=fetched_at, content_type=content_type)


def _parse_fast(body: bytes, url: str, fetched_at: datetime, content_type: str | None) -> ParsedFeed | None:
    return parse_feed_fast(body, url=url, fetched_at=fetched_at, content_type=content_type)


def _parse_reference(body: bytes, url: str, fetched_at: datetime, content_type: str | None) -> ParsedFeed:
    return parse_feed(body, url=url, fetched_at=fetched_at, content_type=content_type)


def _worker_init() -> None:
    # Workers ignore SIGINT: the main process decides when to stop (Ctrl-C would otherwise print
    # one traceback per worker).
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ParsePool:
    """Parses off the event loop; in a process pool when it pays. ``workers=0`` means threads only."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is None:
            # MONITOR_PARSE_WORKERS: a tuning knob (0 = parse in threads only); default one per core.
            env = os.environ.get("MONITOR_PARSE_WORKERS", "").strip()
            workers = int(env) if env.isdigit() else (os.cpu_count() or 1)
        self.workers = workers
        self._executor: Executor | None = None
        self._broken = self.workers < 2  # one core: a pool only adds pickling
        self._pending = 0
        self.parsed_fast = 0  # by the fast parser (in a thread)
        self.parsed_in_pool = 0  # by feedparser in a worker process
        self.parsed_in_thread = 0  # by feedparser in a thread

    def _pool(self) -> Executor | None:
        if self._broken:
            return None
        if self._executor is None:
            try:
                # forkserver, not fork: the main process runs threads (anyio workers, the database)
                # and forking a threaded process can copy a held lock into the child.
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(["monitor.parse_pool"])
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=ctx, initializer=_worker_init
                )
            except (OSError, ValueError) as exc:
                log.warning("cannot start the parse pool; parsing in threads", extra={"error": str(exc)})
                self._broken = True
                return None
        return self._executor

    async def parse(
        self, body: bytes, url: str, fetched_at: datetime, content_type: str | None = None
    ) -> ParsedFeed:
        """``parse_document`` off the event loop: the fast parser in a thread (cheap: ~1 ms for a
        typical feed, not worth pickling), feedparser in the process pool when it pays."""
        fast = await anyio.to_thread.run_sync(_parse_fast, body, url, fetched_at, content_type)
        if fast is not None:
            self.parsed_fast += 1
            return fast
        self._pending += 1
        try:
            use_pool = self._pending >= POOL_MIN_CONCURRENT or len(body) >= POOL_MIN_BYTES
            executor = self._pool() if use_pool else None
            if executor is not None:
                try:
                    loop = asyncio.get_running_loop()
                    parsed = await loop.run_in_executor(
                        executor, _parse_reference, body, url, fetched_at, content_type
                    )
                    self.parsed_in_pool += 1
                    return parsed
                except (BrokenProcessPool, PicklingError, OSError) as exc:
                    log.warning(
                        "parse pool failed; parsing in threads from now on",
                        extra={"error": f"{type(exc).__name__}: {exc}", "url": url},
                    )
                    self._broken = True
                    self._shutdown()
            parsed = await anyio.to_thread.run_sync(_parse_reference, body, url, fetched_at, content_type)
            self.parsed_in_thread += 1
            return parsed
        finally:
            self._pending -= 1

    def _shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
