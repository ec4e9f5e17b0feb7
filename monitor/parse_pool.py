"""Where feeds are parsed: the fast parser first, feedparser as the fallback, on all cores.

``parse_document`` is the parse stage's entry point for the pipeline: ``monitor.fastparse`` takes
the documents it is sure about, ``monitor.parse.parse_feed`` (feedparser) everything else.

``ParsePool`` runs it off the event loop. Documents that need feedparser (~0.4 ms per entry) go to
a process pool with one worker per core when several wait at once (the first poll of many feeds, a
poll where many changed) or the body is large, so the slow parser uses every core while the main
process keeps fetching and writing; a single small one stays in a thread. The fast parser (~2 ms
for a typical feed) runs in a thread while the pool is not running — starting worker processes
costs more than a few fast parses — and in the pool once it runs and several parses wait: on a
first poll of 500 feeds that moves ~1 s of parsing off the main process's core for ~0.1 s of
unpickling results (measured on the bench corpus). ``prestart`` starts the workers ahead of a poll
that will parse many documents (the first poll of many feeds), so they are ready when the first
bodies arrive. The pool is kept until ``close``. If it cannot start or breaks (a worker killed, a
result that cannot be pickled), parsing goes on in threads: a broken pool never loses a poll.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pickle import PicklingError
from typing import Any

import anyio

from monitor import story_work
from monitor.fastparse import parse_feed_fast
from monitor.parse import ParsedFeed, parse_feed
from monitor.story_work import StoriesUnknown, StoryWork

log = logging.getLogger(__name__)

# A feedparser parse goes to the process pool when at least this many are waiting or running...
POOL_MIN_CONCURRENT = 2
# ... or when the body alone is this large (feedparser needs ~1 s per MB).
POOL_MIN_BYTES = 512 * 1024


def parse_document(
    body: bytes, url: str, fetched_at: datetime, content_type: str | None = None
) -> ParsedFeed:
    """Parse feed bytes: the fast parser when it accepts the document, else feedparser."""
    return _parse_in_worker(body, url, fetched_at, content_type)[0]


def _parse_fast(body: bytes, url: str, fetched_at: datetime, content_type: str | None) -> ParsedFeed | None:
    return parse_feed_fast(body, url=url, fetched_at=fetched_at, content_type=content_type)


def _parse_reference(body: bytes, url: str, fetched_at: datetime, content_type: str | None) -> ParsedFeed:
    return parse_feed(body, url=url, fetched_at=fetched_at, content_type=content_type)


def _parse_in_worker(
    body: bytes,
    url: str,
    fetched_at: datetime,
    content_type: str | None,
    stories_key: str | None = None,
    stories: bytes | None = None,
) -> tuple[ParsedFeed, bool, int]:
    """``parse_document`` (and, when the task names stories, ``story_work.analyse_candidates``),
    whether the fast parser took the document (for the counters) and the process that parsed it.
    ``stories``: the payload named ``stories_key``, sent along until this worker holds it (see
    ``ParsePool``)."""
    work = _story_work(stories_key, stories)  # first: a worker without them parses nothing yet
    parsed = _parse_fast(body, url, fetched_at, content_type)
    fast = parsed is not None
    if parsed is None:
        parsed = _parse_reference(body, url, fetched_at, content_type)
    return _analysed(parsed, work, stories_key), fast, os.getpid()


def _parse_reference_in_worker(
    body: bytes,
    url: str,
    fetched_at: datetime,
    content_type: str | None,
    stories_key: str | None = None,
    stories: bytes | None = None,
) -> tuple[ParsedFeed, bool, int]:
    work = _story_work(stories_key, stories)
    parsed = _parse_reference(body, url, fetched_at, content_type)
    return _analysed(parsed, work, stories_key), False, os.getpid()


def _story_work(key: str | None, payload: bytes | None) -> StoryWork | None:
    return None if key is None else story_work.load(key, payload)


def _analysed(parsed: ParsedFeed, work: StoryWork | None, key: str | None) -> ParsedFeed:
    if work is None or key is None:
        return parsed
    return story_work.analyse_candidates(parsed, work, key)


def _ready() -> int:
    return os.getpid()


def _worker_init(monitor_pid: int) -> None:
    # Workers ignore SIGINT: the main process decides when to stop (Ctrl-C would otherwise print
    # one traceback per worker). Not SIGTERM: the executor terminates the workers of a broken pool.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with(monitor_pid)


def _exit_with(pid: int) -> None:
    """End this worker when process ``pid`` (the monitor) ends, even killed (SIGKILL, the OOM
    killer) before it could shut the pool down. A worker otherwise waits for tasks forever (it holds
    the write end of its own task queue, so it never reads EOF), and keeps the forkserver and the
    resource tracker alive with it: three and more processes of ~45 MB each, re-parented to init.
    ``PR_SET_PDEATHSIG`` cannot do it: a worker's parent is the forkserver, not the monitor, and the
    forkserver lives as long as any worker does (each holds its "alive" pipe). Linux 5.3 and later
    (a pidfd, readable once the process exited); elsewhere nothing (best effort)."""
    import select
    import threading

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:  # it ended while this worker started
        os._exit(0)
    except (AttributeError, OSError):  # not Linux, or an old kernel
        return

    def wait_for_exit() -> None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll()
        os._exit(0)

    threading.Thread(target=wait_for_exit, name="exit-with-monitor", daemon=True).start()


def _submit(loop: asyncio.AbstractEventLoop, executor: Executor, *args: Any) -> asyncio.Future[Any] | None:
    """``run_in_executor``; None when the executor was shut down meanwhile (another parse found
    the pool broken, or it is closing): the caller parses here. A broken pool raises."""
    try:
        return loop.run_in_executor(executor, *args)
    except BrokenProcessPool:
        raise
    except RuntimeError:  # "cannot schedule new futures after shutdown"
        return None


@dataclass(slots=True, eq=False)
class _Stories:
    """The stories the workers are sent (``story_work.StoryWork.payload``), their key, and which
    workers (pids) have parsed with them or are known to lack them."""

    payload: bytes
    key: str
    holders: set[int] = field(default_factory=set)
    lacking: set[int] = field(default_factory=set)

    def carry(self) -> bytes | None:
        """The payload, to go with a task until some worker has parsed with it and while a worker
        is known to lack it; else None (the task names the stories by key alone, and a worker that
        does not hold them asks: ``StoriesUnknown``). Not with every task: ~42 KB for the shipped
        story, ~500 tasks on a first poll."""
        return self.payload if not self.holders or self.lacking else None

    def held_by(self, pid: int) -> None:
        self.holders.add(pid)
        self.lacking.discard(pid)


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
        self._started = False
        self.parsed_fast = 0  # by the fast parser (in a thread)
        self.parsed_in_pool = 0  # by feedparser in a worker process
        self.parsed_in_thread = 0  # by feedparser in a thread
        self.parsed_by_workers = 0  # by either parser in a worker process
        # What the workers do for the stories, set by the monitor once its stories are compiled
        # (from its writer thread, while the event loop sends tasks: replaced as a whole): a
        # worker then also matches and diffs against the baselines (analyse_candidates).
        self._current: _Stories | None = None
        self.stories_sent = 0  # tasks that carried the payload
        self.stories_resent = 0  # tasks sent again with it, to a worker that did not hold it
        # Where the stories come from before they are otherwise compiled (a blocking call, run once
        # in a thread before the first parse in a worker): on a first poll the parses run far
        # ahead of the database writer, which compiles the stories only at its first write.
        self.stories_source: Callable[[], bytes | None] | None = None
        self._stories_asked: anyio.Event | None = None
        self._stories_known = False

    @property
    def stories(self) -> bytes | None:
        """The stories' payload for the workers (``story_work.StoryWork.payload``), or None."""
        current = self._current
        return None if current is None else current.payload

    @stories.setter
    def stories(self, payload: bytes | None) -> None:
        if payload != self.stories:
            self._current = None if payload is None else _Stories(payload, story_work.payload_key(payload))

    @property
    def stories_key(self) -> str | None:
        """Names the stories (``story_work.payload_key``) in the tasks and in what workers return."""
        current = self._current
        return None if current is None else current.key

    def _pool(self) -> Executor | None:
        if self._broken:
            return None
        if self._executor is None:
            try:
                # forkserver, not fork: the main process runs threads (anyio workers, the database)
                # and forking a threaded process can copy a held lock into the child.
                ctx = multiprocessing.get_context("forkserver")
                # With the match and diff modules analyse_candidates needs (neither imports the
                # store nor the configuration's models): imported once in the forkserver, not in
                # each worker (~0.2 s each).
                ctx.set_forkserver_preload(
                    ["monitor.parse_pool", "monitor.match.engine", "monitor.diff.novelty"]
                )
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=ctx,
                    initializer=_worker_init,
                    initargs=(os.getpid(),),
                )
            except (OSError, ValueError) as exc:
                log.warning("cannot start the parse pool; parsing in threads", extra={"error": str(exc)})
                self._broken = True
                return None
        return self._executor

    def prestart(self) -> None:
        """Start the worker processes now (in the background), ahead of a poll that will parse
        many documents; a no-op with one core or a broken pool."""
        executor = self._pool()
        if executor is not None and not self._started:
            self._started = True
            for _ in range(self.workers):
                executor.submit(_ready)  # spawns the workers without waiting for them

    @property
    def running(self) -> bool:
        return self._executor is not None and not self._broken

    async def parse(
        self, body: bytes, url: str, fetched_at: datetime, content_type: str | None = None
    ) -> ParsedFeed:
        """``parse_document`` off the event loop: in the process pool when it runs and several
        parses wait, else the fast parser in a thread and feedparser in the pool when it pays."""
        self._pending += 1
        try:
            if self.running and self._pending >= POOL_MIN_CONCURRENT:
                parsed = await self._parse_in_pool(_parse_in_worker, body, url, fetched_at, content_type)
                if parsed is not None:
                    return parsed
            fast = await anyio.to_thread.run_sync(_parse_fast, body, url, fetched_at, content_type)
            if fast is not None:
                self.parsed_fast += 1
                return fast
            use_pool = self._pending >= POOL_MIN_CONCURRENT or len(body) >= POOL_MIN_BYTES
            if use_pool and self._pool() is not None:
                parsed = await self._parse_in_pool(
                    _parse_reference_in_worker, body, url, fetched_at, content_type
                )
                if parsed is not None:
                    return parsed
            parsed = await anyio.to_thread.run_sync(_parse_reference, body, url, fetched_at, content_type)
            self.parsed_in_thread += 1
            return parsed
        finally:
            self._pending -= 1

    async def _parse_in_pool(
        self,
        fn: Callable[
            [bytes, str, datetime, str | None, str | None, bytes | None], tuple[ParsedFeed, bool, int]
        ],
        body: bytes,
        url: str,
        fetched_at: datetime,
        content_type: str | None,
    ) -> ParsedFeed | None:
        """``fn`` in a worker; None (parse here instead) if the pool is or just got broken."""
        executor = self._executor
        if executor is None:
            return None
        await self._await_stories()
        stories = self._current
        key = payload = None
        if stories is not None:
            key, payload = stories.key, stories.carry()
            self.stories_sent += payload is not None
        loop = asyncio.get_running_loop()
        try:
            future = _submit(loop, executor, fn, body, url, fetched_at, content_type, key, payload)
            if future is None:
                return None
            try:
                parsed, fast, pid = await future
            except StoriesUnknown as unknown:
                # A worker that does not hold them (started after they were sent, or sent the key
                # of stories that changed since): again, with the stories as they are now.
                self.stories_resent += 1
                stories = self._current
                key = payload = None
                if stories is not None:
                    stories.lacking.add(unknown.pid)
                    key, payload = stories.key, stories.payload
                future = _submit(loop, executor, fn, body, url, fetched_at, content_type, key, payload)
                if future is None:
                    return None
                parsed, fast, pid = await future
            if stories is not None:
                stories.held_by(pid)
        except (BrokenProcessPool, PicklingError, OSError) as exc:
            if not self._broken:  # once, not once per parse that was waiting in the pool
                log.warning(
                    "parse pool failed; parsing in threads from now on",
                    extra={"error": f"{type(exc).__name__}: {exc}", "url": url},
                )
            self._broken = True
            self._shutdown()
            return None
        self.parsed_by_workers += 1
        if fast:
            self.parsed_fast += 1
        else:
            self.parsed_in_pool += 1
        return parsed

    async def _await_stories(self) -> None:
        """Ask ``stories_source`` once (the first parse asks, the others wait for its answer)."""
        if self._stories_known or self.stories_source is None:
            return
        if self._stories_asked is not None:
            await self._stories_asked.wait()
            return
        self._stories_asked = anyio.Event()
        try:
            payload = await anyio.to_thread.run_sync(self.stories_source)
            # The source may have set them itself, or the monitor newer ones since: those stand.
            if payload is not None and self._current is None:
                self.stories = payload
        except Exception:  # the stories do not compile: the writer reports it; parse without
            log.debug("no stories for the parse workers", exc_info=True)
        finally:
            self._stories_known = True
            self._stories_asked.set()

    def _shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
