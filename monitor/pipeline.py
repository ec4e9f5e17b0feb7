"""The pipeline and the one core object: ``Monitor``.

``Monitor.poll_feed(name)`` runs fetch -> parse -> match -> diff -> store (-> outbox) for one feed;
``monitor poll`` and the scheduler both call it. The CLI and the web app are thin shells over this
object and the store's queries.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import anyio
from anyio import CapacityLimiter

from monitor import health
from monitor.baseline import fetch_baseline_text
from monitor.config import Config
from monitor.fetch import Fetcher, FetchResult
from monitor.group_commit import GroupCommit
from monitor.memory import release_free_memory
from monitor.parse import ParsedFeed
from monitor.parse_pool import ParsePool
from monitor.store.errors import database_failed, describe
from monitor.store.lite import FEED_STATE_COLUMNS, NOT_MODIFIED_COLUMNS, LiteStore
from monitor.store.sqlite_settings import is_sqlite_url

if TYPE_CHECKING:  # imported where used: a poll in which nothing changed never needs them
    from monitor import diff
    from monitor.fulltext import FullText
    from monitor.match import MatchResult, StoryMatcher, StoryScreen
    from monitor.match.engine import RuleOutcome
    from monitor.store import ChangedItem, PollTransaction, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FeedPollReport:
    """What one poll of one feed did."""

    feed: str
    status: str  # ok | not_modified | unchanged | error | disabled | skipped
    http_status: int | None = None
    new: int = 0
    updated: int = 0
    matched: int = 0
    developments: int = 0
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    crashed: bool = False  # the poll raised (a bug, or this feed's write refused): see Monitor.poll


@dataclass(slots=True)
class PollSummary:
    reports: list[FeedPollReport]
    elapsed: float

    @property
    def failed(self) -> list[FeedPollReport]:
        return [r for r in self.reports if r.status == "error"]

    @property
    def crashed(self) -> list[FeedPollReport]:
        return [r for r in self.reports if r.crashed]

    def count(self, attr: str) -> int:
        return sum(getattr(r, attr) for r in self.reports)


# FeedState's columns, for the copy a not-modified poll computes its health update on.
_STATE_FIELDS = FEED_STATE_COLUMNS


@dataclass(slots=True)
class _PendingWrite:
    """The health row of a poll that brought nothing new, while it waits for its group commit
    (``Monitor._health_commits``), and its outcome."""

    row: dict[str, Any]
    done: anyio.Event = field(default_factory=anyio.Event)
    finished: bool = False  # the batch that held it ran to its end
    written: bool = False  # ... and wrote it (else its row changed since it was read)
    error: BaseException | None = None


@dataclass(slots=True)
class _PollWrite:
    """What one poll of one feed writes (``Monitor._write_poll``), and, while it waits for the group
    commit (``Monitor._poll_commits``), its outcome."""

    name: str
    result: FetchResult
    parsed: ParsedFeed | None
    body_hash: str | None
    slot: datetime | None = None
    fulltexts: dict[str, FullText] | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    report: FeedPollReport | None = None
    error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self.report is not None


@dataclass(slots=True)
class _BatchDiff:
    """The matched items of a batch's feeds per story, waiting for the batch's diff
    (``Monitor._diff_batch``) once every feed of the batch is stored and matched."""

    tx: PollTransaction | None = None  # any of the batch's: they share its session and caches
    items: dict[str, list[diff.StoryItem]] = field(default_factory=dict)
    reports: dict[int, FeedPollReport] = field(default_factory=dict)  # item id -> its feed's
    # Per story, the matcher and baseline of the batch's last match (``Monitor._match``).
    models: dict[str, tuple[StoryMatcher, diff.BaselineModel]] = field(default_factory=dict)

    def add(
        self,
        tx: PollTransaction,
        story_id: str,
        items: Sequence[diff.StoryItem],
        report: FeedPollReport,
        matcher: StoryMatcher,
        baseline: diff.BaselineModel,
    ) -> None:
        if self.tx is None:
            self.tx = tx
        self.models[story_id] = (matcher, baseline)
        self.items.setdefault(story_id, []).extend(items)
        for item in items:
            self.reports[item.item_id] = report


# Feeds written in one group-commit transaction at most (bounds its size and the time it holds
# SQLite's write lock against the alert worker and the CLI).
GROUP_COMMIT_MAX = 64


def _store_error(what: str, exc: BaseException) -> BaseException:
    """What a poll waiting for a group commit raises when its batch failed as a whole (or was
    cancelled): not known whether it committed."""
    from monitor.store import StoreError

    error = StoreError(f"{what}: {describe(exc) or repr(exc)}")
    error.__cause__ = exc  # for database_failed
    return error


# How far a feed's last committed slot may lie ahead of this node's clock and still count: further
# ahead, the slots fired now would all look done until the clock caught up (``health.CLOCK_SLACK``).
SLOT_CLOCK_SLACK = health.CLOCK_SLACK


def _slot_done(last_slot: datetime | None, slot: datetime) -> bool:
    """Was ``slot`` (or a later one) committed for the feed already? A re-run of a slot (a dead
    node's job, run again once its lease expired) commits nothing; a last slot further in the
    future than ``SLOT_CLOCK_SLACK`` is a clock that went back, not a later slot."""
    if last_slot is None or last_slot < slot:
        return False
    return (last_slot - datetime.now(UTC)).total_seconds() <= SLOT_CLOCK_SLACK


def _diff_text(entry_id: str, text: str, fulltexts: dict[str, FullText] | None) -> str:
    """The text the diff stage sees: the extracted article when there is one, else the feed's."""
    fulltext = (fulltexts or {}).get(entry_id)
    return fulltext.text if fulltext is not None and fulltext.text else text


# A poll with at least this many never-polled feeds starts the parse workers up front.
PRESTART_PARSE_POOL = 32


class Monitor:
    """The monitor's API. ``async with Monitor(config) as m: await m.poll()``."""

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self._store = store  # created on first use (the ``store`` property)
        self._store_lock = threading.Lock()
        # The SQLite fast lane (monitor.store.lite), opened by ``open`` when it can serve this
        # database: a poll in which nothing changed then never loads SQLAlchemy or the ORM.
        self._lite: LiteStore | None = None
        self.fetcher: Fetcher | None = None
        self.matchers: dict[str, StoryMatcher] = {}
        self._screen: StoryScreen | None = None  # of the compiled matchers (``_story_screen``)
        self._screen_key = ""  # and the key of the workers' stories (``story_work.payload_key``)
        self.baselines: dict[str, diff.BaselineModel] = {}
        # Per story, the start for which earlier development sources were last withdrawn.
        self._diff_starts: dict[str, datetime] = {}
        self._baseline_texts: dict[str, str | None] = {}
        self._compile_lock = threading.Lock()
        self._prefetched_states: dict[str, Any] = {}  # FeedState read in bulk by poll()
        # SQLite has one writer: funnel writes through one thread instead of fighting for the lock.
        self._db_limiter = CapacityLimiter(1 if is_sqlite_url(config.database) else 8)
        self._in_flight: set[str] = set()
        self._idle = anyio.Event()
        self._idle.set()
        self.stopping = False
        self.parse_pool = ParsePool()
        self.parse_pool.stories_source = self._parse_stories
        self._deliverer: Any = None  # monitor.alert.Deliverer, created on first use
        # Polls that brought nothing new: their health rows, many feeds per transaction.
        self._health_commits = GroupCommit(
            self._write_not_modified_batch,
            limiter=self._db_limiter,
            batch_max=None,
            failure=functools.partial(_store_error, "writing feed health failed"),
        )
        # SQLite has one writer: polls are written in group commits, up to GROUP_COMMIT_MAX feeds
        # per transaction. On PostgreSQL each feed keeps its own transaction: its row lock and the
        # per-story lock are held for one feed, not for a batch, so other nodes are not held up.
        self._group_commit = is_sqlite_url(config.database)
        self._poll_commits = GroupCommit(
            self._write_poll_batch,
            limiter=self._db_limiter,
            batch_max=GROUP_COMMIT_MAX,
            failure=functools.partial(_store_error, "writing polls failed"),
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Monitor:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def store(self) -> Store:
        """The database (``monitor.store.Store``), created on first use from any thread."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    from monitor.store import Store

                    self._store = Store(self.config.database)
        return self._store

    @property
    def _feed_rows(self) -> LiteStore | Store:
        """Where the feeds' rows are read in bulk and the 304s' health rows written: the SQLite
        fast lane when ``open`` opened it, else the store."""
        return self._lite if self._lite is not None else self.store

    async def open(self) -> None:
        feeds = [(f.name, f.url) for f in self.config.feeds]
        if self._store is None:
            # Our own SQLite file, at the newest schema, with every configured feed: the fast lane
            # serves the feeds' rows and the 304s; the full store loads when a feed brings news.
            self._lite = await anyio.to_thread.run_sync(LiteStore.open, self.config.database, feeds)
        if self._lite is None:
            await anyio.to_thread.run_sync(self.store.create_schema)
            await anyio.to_thread.run_sync(self.store.sync_feeds, feeds)
        # The wire (aiohttp, or httpx's own with fetch.http2): see monitor/http_transport.py
        self.fetcher = Fetcher(self.config.fetch)
        await self.fetcher.__aenter__()
        for story in self.config.stories:
            self._baseline_texts[story.id] = await fetch_baseline_text(
                self.config, story, self.fetcher, copies=lambda: self.store
            )
        # Matchers and baselines are compiled on first need (``_stories``): a poll in which nothing
        # changed never needs them, and compiling loads simplemma's dictionary (~1.5 s).

    def _stories(self) -> dict[str, StoryMatcher]:
        """The compiled story matchers (and ``self.baselines``), built once, from any thread."""
        return self._story_models()[0]

    def _story_models(self) -> tuple[dict[str, StoryMatcher], dict[str, diff.BaselineModel]]:
        """The compiled story matchers and their baselines, copies taken together under the lock
        (``_forget_story_state`` may clear both from another thread meanwhile)."""
        with self._compile_lock:
            self._compile_stories()
            return dict(self.matchers), {story_id: self.baselines[story_id] for story_id in self.matchers}

    def _compile_stories(self) -> None:
        """Compiles the stories not compiled yet (with ``_compile_lock`` held)."""
        from monitor import diff
        from monitor.match import compile_story

        if len(self.matchers) < len(self.config.stories):
            for story in self.config.stories:
                if story.id in self.matchers:
                    continue
                text = self._baseline_texts.get(story.id)
                matcher = compile_story(story, text)
                if matcher.similarity is not None:
                    # The story so far (similarity to items already in it, when it started);
                    # a story without similarity rules keeps no such state: skip the query
                    # (~20 ms per story and 400 items read through the ORM).
                    matcher.load_story(self.store.story_item_texts(story.id))
                self.baselines[story.id] = diff.build_baseline(
                    story.id, text, novelty_threshold=story.novelty_threshold
                )
                self.matchers[story.id] = matcher

    def _story_screen(self, matchers: dict[str, StoryMatcher]) -> tuple[StoryScreen, str]:
        """One screen for all stories (``match.StoryScreen``), built once per set of matchers, and
        the key of what the parse workers do for these stories (``story_work.StoryWork``)."""
        from monitor.match import StoryScreen
        from monitor.story_work import StoryWork, payload_key

        with self._compile_lock:
            screen = self._screen
            if screen is None or screen.stories != tuple(matchers.values()):
                screen = StoryScreen(matchers.values())
                baselines = [self.baselines[story_id] for story_id in matchers]
                payload = StoryWork.build(screen, baselines).payload()
                self._screen = screen
                self._screen_key = payload_key(payload)
                # From now on the parse workers also match and diff against the baselines.
                self.parse_pool.stories = payload
            return screen, self._screen_key

    def _parse_stories(self) -> bytes | None:
        """For the parse workers (``ParsePool.stories_source``): what they do for the stories,
        compiling the stories now if need be (they are needed for the first write anyway)."""
        if not self.config.stories:
            return None
        self._story_screen(self._stories())
        return self.parse_pool.stories

    async def close(self) -> None:
        if self._deliverer is not None:
            await self._deliverer.close()
            self._deliverer = None
        if self.fetcher is not None:
            await self.fetcher.__aexit__(None, None, None)
            self.fetcher = None
        self.parse_pool.close()
        if self._lite is not None:
            self._lite.close()
            self._lite = None
        if self._store is not None:
            self._store.close()

    @property
    def alert_channels(self) -> list[str]:
        """Names of the configured alert channels (one outbox row per channel per development)."""
        # Stable names (``email``, ``webhook:<name or URL hash>``, ``apprise:...``): they are part of
        # each delivery's idempotency key. See AlertsConfig.channels.
        return list(self.config.alerts.channels())

    # -- polling ------------------------------------------------------------------------------

    async def poll(
        self,
        names: Sequence[str] | None = None,
        progress: Callable[[FeedPollReport], None] | None = None,
    ) -> PollSummary:
        """One pass over the given feeds (default: all), concurrently within the fetch limits."""
        started = time.perf_counter()
        names = list(names) if names is not None else [f.name for f in self.config.feeds]
        reports: list[FeedPollReport] = []

        # The feeds of this poll are written in the same group commits whichever answers first:
        # a batch waits until it is full or no feed of the poll can still join it, so each batch's
        # items are diffed together in publication order (``_diff_batch``), not in arrival order.
        token = object()

        async def one(name: str) -> None:
            try:
                report = await self.poll_feed_recording_crashes(name, commit_key=(token, name))
            finally:
                self._poll_commits.settle((token, name))
            reports.append(report)
            if progress is not None:
                progress(report)

        # One query for every feed's state instead of one per feed (see _poll_feed).
        wanted = set(names)
        never_polled = 0
        for state in await anyio.to_thread.run_sync(self._feed_rows.feed_states):
            self._prefetched_states[state.name] = state
            never_polled += state.name in wanted and state.last_polled_at is None
        if never_polled >= PRESTART_PARSE_POOL:
            # A first poll of many feeds parses every one: start the parse workers while fetching.
            self.parse_pool.prestart()
        if self._group_commit:
            self._poll_commits.expect((token, name) for name in set(names))
        try:
            async with anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(one, name)
        finally:
            for name in names:
                self._prefetched_states.pop(name, None)
                self._poll_commits.settle((token, name))
        order = {n: i for i, n in enumerate(names)}
        reports.sort(key=lambda r: order.get(r.feed, 0))
        return PollSummary(reports, time.perf_counter() - started)

    async def poll_feed(
        self,
        name: str,
        *,
        scheduled: bool = False,
        slot: datetime | None = None,
        commit_key: Hashable | None = None,
    ) -> FeedPollReport:
        """Poll one feed. Never raises for what a server sends; database errors do raise.

        ``scheduled`` polls respect the feed's back-off and cache lower bounds; a manual poll
        (``monitor poll``) asks now. ``slot`` (the schedule's fire time) makes a scheduled poll
        idempotent: a slot already committed for this feed (by any node) is skipped.
        ``commit_key``: this poll's key in the group commit's ``expect`` (``poll``).
        """
        if name in self._in_flight:
            return FeedPollReport(name, "skipped", error="a poll of this feed is already running")
        self._in_flight.add(name)
        if self._idle.is_set():
            self._idle = anyio.Event()
        started = time.perf_counter()
        try:
            report = await self._poll_feed(name, scheduled, slot, commit_key)
        finally:
            self._in_flight.discard(name)
            if not self._in_flight:
                self._idle.set()
                release_free_memory()
        report.elapsed = time.perf_counter() - started
        return report

    async def poll_feed_recording_crashes(
        self,
        name: str,
        *,
        scheduled: bool = False,
        slot: datetime | None = None,
        commit_key: Hashable | None = None,
    ) -> FeedPollReport:
        """``poll_feed`` for a caller that goes on with other feeds (``poll``, the daemon's job): a
        failure of this feed's own stages or write (a bug, its items refused) is recorded as the
        feed's error instead of raised; a failure of the database as a whole still raises (every
        feed's write would fail alike: the poll stops, the CLI says why)."""
        started = time.perf_counter()
        try:
            return await self.poll_feed(name, scheduled=scheduled, slot=slot, commit_key=commit_key)
        except Exception as exc:
            if database_failed(exc):
                raise
            return await self._record_crashed_poll(name, exc, time.perf_counter() - started)

    async def _record_crashed_poll(self, name: str, exc: Exception, elapsed: float) -> FeedPollReport:
        """A poll of one feed raised: logged with its traceback, and recorded as the feed's error
        (kind ``internal``: ``monitor feeds`` shows it; back-off and "source down" as for any
        failure) in a transaction of its own, if the database takes it."""
        error = f"{type(exc).__name__}: {exc}"[:1000]
        log.error("poll of a feed failed", extra={"feed": name, "error": error}, exc_info=exc)
        # Its write rolled back, but the matchers may have remembered its items (the story state):
        # rebuilt from the database on next use, as after a failed group commit.
        self._forget_story_state()
        report = FeedPollReport(name, "error", error=f"internal: {error}")
        url = next((f.url for f in self.config.feeds if f.name == name), "")
        result = FetchResult(url, url, error_kind="internal", error=error, elapsed=elapsed)
        # No body hash and no validators: the next poll fetches and parses the feed again.
        job = _PollWrite(name, result, None, None)
        try:
            report = await anyio.to_thread.run_sync(self._write_poll, job, limiter=self._db_limiter)
        except Exception as write_exc:
            if database_failed(write_exc):
                raise
            log.error(
                "could not record the failed poll",
                extra={"feed": name, "error": f"{type(write_exc).__name__}: {write_exc}"},
            )
        report.crashed, report.elapsed = True, elapsed
        return report

    async def _poll_feed(
        self, name: str, scheduled: bool, slot: datetime | None = None, commit_key: Hashable | None = None
    ) -> FeedPollReport:
        assert self.fetcher is not None, "Monitor is not open"
        state = self._prefetched_states.pop(name, None) or await anyio.to_thread.run_sync(
            self.store.feed_state, name
        )
        if state is None:
            return FeedPollReport(name, "error", error="feed is not configured")
        if state.disabled:
            return FeedPollReport(name, "disabled", error=state.disabled_reason)
        if slot is not None and _slot_done(state.last_slot, slot):
            return FeedPollReport(name, "skipped", error="this schedule slot was already polled")
        now = datetime.now(UTC)
        # Slack: the schedule's own jitter (and the fetch time) must not skip a whole interval.
        policy = self._health_policy(name)
        slack = min(self.config.fetch.jitter, policy.interval / 10) + 1.0
        due = health.is_due(state, now, slack, horizon=policy.max_backoff)
        if scheduled and not due and state.next_poll_after is not None:
            return FeedPollReport(
                name, "skipped", error=f"not due before {state.next_poll_after.isoformat()}"
            )

        result = await self.fetcher.fetch_feed(state.current_url, state.etag, state.last_modified)
        parsed: ParsedFeed | None = None
        body_hash: str | None = None
        if result.ok and result.body is not None:
            body_hash = hashlib.blake2b(result.body, digest_size=16).hexdigest()
            if body_hash != state.body_hash:
                # fast parser first, feedparser as fallback; a process pool when many wait (parse_pool)
                parsed = await self.parse_pool.parse(
                    result.body, result.final_url, datetime.now(UTC), result.content_type
                )
        if parsed is None:
            report = await self._write_not_modified(state, result, body_hash, slot)
            if report is not None:
                return report
        fulltexts = await self._fetch_fulltexts(name, parsed)
        job = _PollWrite(name, result, parsed, body_hash, slot, fulltexts)
        if not self._group_commit:
            return await anyio.to_thread.run_sync(self._write_poll, job, limiter=self._db_limiter)
        await self._poll_commits.write(job, commit_key)
        assert job.report is not None
        return job.report

    def _write_poll_batch(self, jobs: list[_PollWrite]) -> None:
        """The polls of ``jobs`` in one transaction. If any of them raises, the transaction rolls
        back and each poll is written on its own, so one bad feed fails only itself."""
        if len(jobs) > 1:
            try:
                with self.store.poll_batch() as batch:
                    batch.preload([job.name for job in jobs])
                    diffs = _BatchDiff()
                    reports = [self._write_poll_in(batch.poll(job.name), job, diffs) for job in jobs]
                    self._diff_batch(diffs)
            except Exception as exc:  # redone one by one below, where each error is reported
                self._forget_story_state()
                if database_failed(exc):  # ... unless each would fail alike (a lock: 30 s each)
                    raise
                log.debug("group commit failed; writing the polls one by one", exc_info=True)
            else:
                for job, report in zip(jobs, reports, strict=True):
                    job.report = report
                return
        for job in jobs:
            try:
                job.report = self._write_poll(job)
            except Exception as exc:  # raised from that feed's poll_feed
                job.error = exc
                self._forget_story_state()
                if database_failed(exc):  # the jobs left get it too (GroupCommit), none is tried
                    raise

    def _forget_story_state(self) -> None:
        """After a write that rolled back: the matchers' story state (items so far, the story's
        start) has seen items the database does not have; rebuild it from the database on next use
        instead of matching the same items a second time."""
        with self._compile_lock:
            self.matchers.clear()
            self._screen = None
            self.baselines.clear()
            self._diff_starts.clear()

    async def _write_not_modified(
        self, state: Any, result: FetchResult, body_hash: str | None, slot: datetime | None
    ) -> FeedPollReport | None:
        """A poll that brought nothing to parse (304, or the same body again) changes only the feed's
        health counters and validators: computed here by ``health.record_poll`` on a copy of the
        state, written together with other such feeds in one transaction (``_health_commits``).
        None when the feed needs its normal poll transaction (a failure, a "source back" alert, a
        move, or a row that changed since it was read)."""
        if result.error_kind is not None or state.disabled or state.down_alerted:
            return None
        copy = SimpleNamespace(**{c: getattr(state, c) for c in _STATE_FIELDS})
        if slot is not None:
            copy.last_slot = slot
        update = health.record_poll(
            copy,  # type: ignore[arg-type]
            result,
            None,
            body_hash,
            self._health_policy(state.name),
            datetime.now(UTC),
        )
        if update.status == "error" or update.deliveries or update.moved_to or update.disabled:
            return None
        row = {c: getattr(copy, c) for c in NOT_MODIFIED_COLUMNS}
        row.update(id=state.id, current_url=state.current_url, expect_polls_total=state.polls_total)
        pending = _PendingWrite(row)
        await self._health_commits.write(pending)
        if not pending.written:
            return None
        return FeedPollReport(
            state.name, update.status, http_status=result.status, error=update.error, problems=update.problems
        )

    def _write_not_modified_batch(self, batch: list[_PendingWrite]) -> None:
        """The health rows of ``batch`` in one transaction (the fast lane's, or the store's)."""
        skipped = self._feed_rows.write_not_modified([p.row for p in batch])
        for p in batch:
            p.written = p.row["id"] not in skipped
            p.finished = True

    async def _fetch_fulltexts(self, name: str, parsed: ParsedFeed | None) -> dict[str, FullText]:
        """For a ``fulltext: true`` feed: the article text of new entries that match a story,
        fetched before (outside) the write transaction. Keyed by entry id."""
        if parsed is None or not parsed.is_feed or not self.config.stories or self.fetcher is None:
            return {}
        try:
            if not self.config.feed(name).fulltext:
                return {}
        except KeyError:
            return {}
        from monitor.store.pending import changed_entry_ids

        pending = await anyio.to_thread.run_sync(changed_entry_ids, self.store, name, parsed.entries)
        matchers = await anyio.to_thread.run_sync(self._stories) if pending else {}
        wanted = [
            (e.entry_id, e.url, e.text)
            for e in parsed.entries
            if pending.get(e.entry_id) == "new"
            and any(m.candidate(e.title, e.text) for m in matchers.values())
        ]
        from monitor.fulltext import fetch_many

        return await fetch_many(self.fetcher, wanted) if wanted else {}

    def _write_poll(self, job: _PollWrite) -> FeedPollReport:
        with self.store.poll_transaction(job.name) as tx:
            diffs = _BatchDiff()
            report = self._write_poll_in(tx, job, diffs)
            self._diff_batch(diffs)
            return report

    def _write_poll_in(self, tx: PollTransaction, job: _PollWrite, diffs: _BatchDiff) -> FeedPollReport:
        """One feed's writes in ``tx``; its matched items are left in ``diffs`` for the batch's diff."""
        name, result, parsed, body_hash, slot = job.name, job.result, job.parsed, job.body_hash, job.slot
        fulltexts = job.fulltexts
        if slot is not None:
            # The feed row is locked (FOR UPDATE on PostgreSQL): this check and the write commit
            # together, so each slot is committed once across the cluster, re-runs included.
            if _slot_done(tx.state.last_slot, slot):
                return FeedPollReport(name, "skipped", error="this schedule slot was already polled")
            tx.state.last_slot = slot
        report = FeedPollReport(name, "ok", http_status=result.status)
        self._update_health(tx, result, parsed, body_hash, report)
        if parsed is not None and parsed.is_feed:
            changed = tx.upsert_entries(parsed.entries)
            report.new = sum(1 for c in changed if c.kind == "new")
            report.updated = len(changed) - report.new
            for item in changed:
                fulltext = (fulltexts or {}).get(item.entry.entry_id)
                if fulltext is not None:
                    tx.set_fulltext(item.item_id, fulltext.text, fulltext.status)
            self._match(tx, changed, report, diffs, fulltexts, parsed)
        return report

    def _update_health(
        self,
        tx: PollTransaction,
        result: FetchResult,
        parsed: ParsedFeed | None,
        body_hash: str | None,
        report: FeedPollReport,
    ) -> None:
        """Feed health, back-off and source down/back alerts (monitor.health), in this transaction."""
        update = health.record_poll(
            tx.state, result, parsed, body_hash, self._health_policy(tx.state.name), datetime.now(UTC)
        )
        report.status = update.status
        report.error = update.error
        report.problems = update.problems
        tx.enqueue(update.deliveries)

    def _health_policy(self, name: str) -> health.HealthPolicy:
        fetch = self.config.fetch
        try:
            interval = self.config.feed_interval(self.config.feed(name))
        except KeyError:
            interval = fetch.interval
        return health.HealthPolicy(
            interval=interval,
            max_backoff=fetch.max_backoff,
            alert_after=fetch.alert_after,
            channels=self.alert_channels,
        )

    def _match(
        self,
        tx: PollTransaction,
        changed: Sequence[ChangedItem],
        report: FeedPollReport,
        diffs: _BatchDiff,
        fulltexts: dict[str, FullText] | None = None,
        parsed: ParsedFeed | None = None,
    ) -> None:
        """Matches one feed's new and changed items against every story and stores the matches;
        the matched items wait in ``diffs`` for the batch's diff (``_diff_batch``). ``parsed``: the
        feed the items come from, with what the parse worker matched and analysed of them
        (``ParsedFeed.screened``, ``.outcomes``, ``.novelty``, ``.sentences``, ``.documents``; see
        story_work)."""
        if not changed or not self.config.stories:
            return
        from monitor import diff
        from monitor.store import MatchRecord

        matched_ids: set[int] = set()
        # Match on the article text when the full-text stage fetched it (teaser feeds); chosen once
        # per item for all stories. The per-item analysis the stories share (folding, sentences,
        # lemmas) is computed once too: ``match.prepare`` and ``diff.novelty.item_sentences`` are
        # cached, and the stories run one after another over the same items.
        texts = [_diff_text(item.entry.entry_id, item.entry.text, fulltexts) for item in changed]
        matchers, baselines = self._story_models()
        # Items that no story could match (most of them) are screened out once for all stories.
        screen, key = self._story_screen(matchers)
        # The worker matched the entries' own texts against these stories' rules and diffed them
        # against their baselines: its outcomes stand (an entry without any is no candidate) unless
        # the text diffed is an extracted article. Only what depends on the story state is left.
        worker = parsed if parsed is not None and parsed.screened == key else None
        outcomes: dict[str, tuple[RuleOutcome | None, ...]] = {}
        novelties: dict[str, tuple[diff.BaselineNovelty | None, ...]] = {}
        analysed: dict[str, Any] = {}
        documents: dict[str, Any] = {}
        if worker is not None:
            outcomes, novelties = worker.outcomes, worker.novelty
            analysed, documents = worker.sentences, worker.documents
        own_texts = [text == item.entry.text for item, text in zip(changed, texts, strict=True)]
        candidates = [
            item.entry.entry_id in outcomes
            if worker is not None and own
            else screen.could_hit(item.entry.title, text)
            for item, text, own in zip(changed, texts, own_texts, strict=True)
        ]
        # Match every story first, then store all matches in one statement (one executemany per
        # feed instead of one per story and feed); the removals below run per story after its
        # matches are stored, the diff once for the batch (``_diff_batch``).
        records: list[MatchRecord] = []
        matched: list[tuple[str, StoryMatcher, list[diff.StoryItem], list[int], datetime | None]] = []
        for index, (story_id, matcher) in enumerate(matchers.items()):
            story_items: list[diff.StoryItem] = []
            unmatched_updates: list[int] = []
            cutoff_before = matcher.background_cutoff
            for item, text, candidate, own_text in zip(changed, texts, candidates, own_texts, strict=True):
                entry = item.entry
                if not candidate:  # matcher.match would say "no story terms"
                    if item.kind == "updated":
                        unmatched_updates.append(item.item_id)
                    continue
                # the worker's outcomes and analysis are of the entry's own text
                found = outcomes.get(entry.entry_id) if own_text else None
                novelty = novelties.get(entry.entry_id) if own_text else None
                result: MatchResult = matcher.match(
                    entry.title,
                    text,
                    entry.published if entry.published_from_feed else None,
                    doc=documents.get(entry.entry_id) if found is not None else None,
                    outcome=found[index] if found is not None else True,
                )
                if not result.matched:
                    if item.kind == "updated":
                        unmatched_updates.append(item.item_id)
                    continue
                matched_ids.add(item.item_id)
                records.append(
                    MatchRecord(story_id, item.item_id, result.score, result.terms, result.evidence)
                )
                story_items.append(
                    diff.StoryItem(
                        item_id=item.item_id,
                        feed=item.feed_name,
                        url=entry.url,
                        title=entry.title,
                        text=text,
                        published=entry.published,
                        kind=item.kind,
                        previous_title=item.previous_title,
                        previous_text=item.previous_text,
                        # computed on the entry's own text: not for an extracted article
                        sentences=analysed.get(entry.entry_id) if own_text else None,
                        novelty=novelty[index] if novelty is not None else None,
                    )
                )
            matched.append((story_id, matcher, story_items, unmatched_updates, cutoff_before))
        tx.add_matches(records)
        for story_id, matcher, story_items, unmatched_updates, cutoff_before in matched:
            tx.remove_matches(unmatched_updates, story_id)
            # An item that left the story is no longer a source of its developments.
            tx.remove_development_sources(story_id, unmatched_updates)
            cutoff = matcher.background_cutoff
            if cutoff is not None and cutoff != cutoff_before:
                # The story's start became known (or moved): earlier items are background.
                tx.remove_matches_before(story_id, cutoff)
            diffs.add(tx, story_id, story_items, report, matcher, baselines[story_id])
        report.matched = len(matched_ids)

    def _diff_batch(self, diffs: _BatchDiff) -> None:
        """The diff stage for a batch's matched items, story by story, in the batch's transaction:
        all of the batch's items of a story at once, so which of them opens a development depends
        on their publication dates and content (``diff.diff_items``), not on which feed was
        written first. A created development counts for the feed of the item that opened it."""
        tx = diffs.tx
        if tx is None:
            return
        from monitor import diff

        for story_id, story_items in diffs.items.items():
            # The matcher and baseline the batch's items were matched with: not read again here, as
            # ``_forget_story_state`` (a feed's crashed poll, on the event loop) may have dropped
            # them meanwhile, and matchers rebuilt from the database lack this batch's items.
            matcher, baseline = diffs.models[story_id]
            # Coverage older than the story's start restates what the baseline summarises: it is
            # never a development, also when it was diffed before the start was known.
            story_start = matcher.state.start
            if story_start is not None and self._diff_starts.get(story_id) != story_start:
                tx.remove_development_sources(story_id, published_before=diff.background_before(story_start))
                self._diff_starts[story_id] = story_start
            if not story_items:
                continue
            known = tx.known_developments(story_id)
            found = diff.find_developments(baseline, known, story_items, story_start=story_start)
            for record in found:
                _, created = tx.add_development(record, self.alert_channels)
                if created and record.sources:
                    opener = diffs.reports.get(record.sources[0].item_id)
                    if opener is not None:
                        opener.developments += 1

    async def wait_idle(self) -> None:
        """Return once no poll is running (used for a clean shutdown)."""
        while self._in_flight:
            await self._idle.wait()

    # -- alerts -------------------------------------------------------------------------------

    @property
    def deliverer(self) -> Any:
        """The outbox worker (``monitor.alert.Deliverer``) of this monitor."""
        if self._deliverer is None:
            from monitor.alert import Deliverer

            texts = {sid: text or "" for sid, text in self._baseline_texts.items()}
            self._deliverer = Deliverer(self.config, self.store, texts, limiter=self._db_limiter)
        return self._deliverer

    async def deliver_pending(self, *, drain: bool = False) -> Any:
        """One pass of the alert outbox worker: send what is due (see monitor.alert.worker).
        Returns a ``DeliveryRunReport``. The daemon schedules this every ``alerts.deliver_every``;
        ``monitor poll`` calls it once after polling."""
        return await self.deliverer.run_once(drain=drain)

    # -- reading ------------------------------------------------------------------------------

    def items(self, story_id: str | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        return self.store.matched_items(story_id, since)

    def developments(self, story_id: str | None = None) -> list[dict[str, Any]]:
        return self.store.developments(story_id)
