"""The daemon's scheduler: APScheduler 4 wiring, reconciliation with feeds.yaml, watchdog, shutdown.

Design notes (see ../shared/notes/apscheduler-4-findings.md for the measurements behind them):
- Schedules live in the monitor's own database (APScheduler's SQLAlchemy data store), one per feed,
  id ``poll:<feed name>``, added with ``ConflictPolicy.do_nothing`` so a restart keeps their phase;
  a schedule whose interval/jitter changed in feeds.yaml (or whose stored trigger disagrees with
  it) is removed and added anew, a removed feed's is removed.
  With PostgreSQL every node adds the same schedules and the PostgreSQL (NOTIFY) event broker tells
  the others; APScheduler's SELECT ... FOR UPDATE SKIP LOCKED claims give each fire to one node.
- The poll task has ``max_running_jobs=None``: APScheduler's limit is per task and cluster-wide, so
  it cannot mean "one poll per feed". Instead a poll holds a PostgreSQL advisory lock per feed for
  its whole duration (``monitor.store.cluster.feed_poll_lock``; a second poll of the same feed
  anywhere in the cluster is skipped as "busy"), and ``Monitor.poll_feed`` refuses a concurrent poll
  of the same feed in one process (SQLite: one node).
- Exactly once per slot: each poll carries its slot (the schedule's fire time without jitter) and
  commits it with the feed row locked; a re-run of a slot that was already committed (APScheduler
  re-runs a crashed node's jobs once their lease expires) commits nothing. Items, matches,
  developments and outbox deliveries have unique constraints besides.
- The node identity is stable (``--node-id``, default the host name): a restart with a new identity
  can hang on leases its predecessor left behind; with the same identity it takes them back at once.
- A watchdog wakes the schedule and job loops every ``WATCHDOG_PERIOD`` seconds, so schedules and
  jobs whose leases a dead or stopped node left behind are picked up once the lease expires
  (APScheduler 4.0.0a6 otherwise sleeps until a schedule event that never comes).
  Bound: ``RECOVERY_BOUND`` = lease duration + watchdog period (20 s) after a node's death, plus at
  most one poll interval until the feed's next slot. A task with a finite ``max_running_jobs`` whose
  running job died with its node waits for APScheduler's clean-up (every ``CLEANUP_PERIOD``) instead:
  lease + clean-up period (30 s).
- APScheduler creates its tables itself, and that DDL races when nodes start at the same moment on
  an empty database: its start-up runs under the same advisory lock as the migrations.
- On SIGTERM in-flight polls finish (bounded by ``DRAIN_TIMEOUT``), then the scheduler stops and
  the node gives back the schedule leases it still holds, so the others need not wait for them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import anyio
import attrs
from apscheduler import AsyncScheduler, ConflictPolicy, RunState, current_job
from apscheduler._enums import CoalescePolicy
from apscheduler._events import Event, JobAdded, JobReleased, ScheduleUpdated
from apscheduler.abc import EventBroker
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.eventbrokers.local import LocalEventBroker
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from monitor import ops
from monitor.config import Config, ConfigError
from monitor.pipeline import FeedPollReport, Monitor
from monitor.store.cluster import FeedLocks, release_schedule_leases, schema_lock, sqlite_daemon_lock
from monitor.store.database import (
    _sqlite_pragmas,
    async_url,
    is_sqlite,
    normalise_url,
    postgres_keepalives,
    redact,
)
from monitor.store.errors import database_failed, describe, leaves

log = logging.getLogger(__name__)

POLL_TASK_ID = "monitor.poll_feed"
SCHEDULE_PREFIX = "poll:"
# Seconds a node may hold a schedule or job before others may take it. APScheduler renews the
# leases of running jobs every half lease, so a long poll keeps its job; a dead node's lease lapses.
LEASE_DURATION = 15.0
WATCHDOG_PERIOD = 5.0
# Bound on how long schedules abandoned by a crashed node stay idle (documented in the README).
RECOVERY_BOUND = LEASE_DURATION + WATCHDOG_PERIOD
DRAIN_TIMEOUT = 20.0  # seconds in-flight polls get to finish on SIGTERM
# APScheduler's clean-up releases jobs whose lease expired. A task with a finite max_running_jobs
# (the alert delivery worker: 1) whose running job died with its node cannot run again until then:
# its cluster-wide running-jobs counter stays full. The default period is 15 minutes.
CLEANUP_PERIOD = 15.0
FETCHED = frozenset({"ok", "not_modified", "unchanged", "error"})  # statuses of a poll that fetched

# The job function must be importable by reference; it reaches the running node through these.
_current_monitor: Monitor | None = None
_current_locks: FeedLocks | None = None
_current_node: str = ""


class NodeConflict(ConfigError):
    """This node cannot run: its id (PostgreSQL) or the SQLite database is taken by a live daemon."""


def default_node_id() -> str:
    return socket.gethostname() or "monitor"


def schedule_id(feed_name: str) -> str:
    return SCHEDULE_PREFIX + feed_name


def _current_slot() -> tuple[datetime | None, str | None]:
    """The running job's slot (its schedule fire time without jitter) and id."""
    try:
        job = current_job.get()
    except LookupError:
        return None, None
    fire = job.scheduled_fire_time
    if fire is None:
        return None, str(job.id)
    return fire - (job.jitter or timedelta(0)), str(job.id)


async def poll_feed_job(feed_name: str) -> dict[str, Any]:
    """The scheduled task: one poll of one feed. Safe to re-run (polls are idempotent per slot).

    It never raises: APScheduler would publish the traceback in the JobReleased event, and the
    PostgreSQL broker crashes the scheduler on a NOTIFY payload over 8000 bytes."""
    monitor, locks = _current_monitor, _current_locks
    if monitor is None or locks is None or monitor.stopping:
        return {"feed": feed_name, "status": "skipped"}
    slot, job_id = _current_slot()
    delay = (datetime.now(UTC) - slot).total_seconds() if slot else None
    # A poll of this feed still running elsewhere (a slow server) may finish: then this slot runs.
    wait = min(_interval_of(monitor, feed_name), 60.0)
    try:
        async with locks.hold(feed_name, wait=wait) as acquired:
            if acquired:
                # A failure of this feed's own stages is recorded as its error (kind internal), as
                # in `monitor poll`, while this node still holds the feed.
                report = await monitor.poll_feed_recording_crashes(feed_name, scheduled=True, slot=slot)
            else:
                report = FeedPollReport(feed_name, "busy", error="another node is polling this feed")
    except Exception as exc:  # the database went away mid-poll, ...: logged, retried next slot
        log.exception("poll failed", extra={"feed": feed_name, "node": _current_node, "job": job_id})
        ops.observe_poll("failed", 0.0)
        return {"feed": feed_name, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
    fields = {
        "feed": feed_name,
        "status": report.status,
        "slot": slot.isoformat() if slot else None,
        "node": _current_node,
        "job": job_id,
    }
    if report.status in FETCHED:
        level = logging.WARNING if report.status == "error" else logging.INFO
        fields.update(
            new=report.new,
            updated=report.updated,
            matched=report.matched,
            developments=report.developments,
            error=report.error,
            elapsed=round(report.elapsed, 3),
        )
        log.log(level, "polled feed", extra=fields)
    else:
        log.info("poll skipped", extra={**fields, "reason": report.error})
    ops.observe_poll(report.status, report.elapsed, report.new, report.developments, delay)
    return {"feed": feed_name, "status": report.status, "new": report.new}


def _interval_of(monitor: Monitor, feed_name: str) -> float:
    try:
        return monitor.config.feed_interval(monitor.config.feed(feed_name))
    except KeyError:
        return 0.0


def make_scheduler_engine(database_url: str) -> AsyncEngine:
    url = async_url(database_url)
    if is_sqlite(database_url):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # APScheduler's loops and the feed-lock connection; polls write through the Store's engine.
    # Keepalives as on the Store's engine: this one holds the feed locks (``FeedLocks``).
    return create_async_engine(
        url, pool_pre_ping=True, pool_size=4, max_overflow=6, connect_args=postgres_keepalives(url)
    )


def fit_for_notify(event: Event) -> Event:
    """A JobReleased event without the failed job's traceback (each node logs it locally). With it,
    a NOTIFY payload can exceed PostgreSQL's 8000 bytes, and APScheduler 4.0.0a6's psycopg broker
    then raises inside the scheduler, which crashes the node."""
    if isinstance(event, JobReleased) and (event.exception_traceback or event.exception_message):
        return attrs.evolve(
            event, exception_traceback=None, exception_message=(event.exception_message or "")[:1000]
        )
    return event


def make_event_broker(database_url: str, engine: AsyncEngine) -> EventBroker:
    if is_sqlite(database_url):
        return LocalEventBroker()
    # PsycopgEventBroker works with current anyio (the asyncpg one drops events on anyio >= 4.14).
    from apscheduler.eventbrokers.psycopg import PsycopgEventBroker

    class BoundedPsycopgEventBroker(PsycopgEventBroker):
        async def publish(self, event: Event) -> None:
            await super().publish(fit_for_notify(event))

    # Keepalives on its LISTEN connection too, which waits for notifications and sends nothing:
    # without them a server that vanishes (no FIN, no RST) leaves it waiting ~2 h 11 min, and the
    # node hears nothing of the schedules other nodes add or change until then.
    return BoundedPsycopgEventBroker.from_async_sqla_engine(engine, options=postgres_keepalives(database_url))


def _schedule_metadata(config: Config, feed_name: str) -> dict[str, Any]:
    feed = config.feed(feed_name)
    return {"interval": config.feed_interval(feed), "jitter": _jitter(config, feed_name)}


def _jitter(config: Config, feed_name: str) -> float:
    # Never more than a tenth of the interval, so a 1 s feed still polls about every second.
    return min(config.fetch.jitter, config.feed_interval(config.feed(feed_name)) / 10)


def _fires_too_late(next_fire_time: datetime | None, period: float) -> bool:
    """A schedule planned further ahead than one period (interval + jitter) from now: the wall
    clock was set back since it was planned (an NTP step, a VM restored from a snapshot), and it
    would not fire until the clock caught up."""
    if next_fire_time is None:
        return False
    return (next_fire_time - datetime.now(UTC)).total_seconds() > period + CLOCK_SLACK


# Seconds a schedule may be planned beyond one period (``_fires_too_late``), and the step back of the
# wall clock the watchdog reacts to.
CLOCK_SLACK = 10.0


def _trigger_interval(trigger: Any) -> float | None:
    """A stored schedule's interval in seconds (None: not an interval trigger)."""
    if not isinstance(trigger, IntervalTrigger):
        return None
    span = timedelta(
        weeks=trigger.weeks,
        days=trigger.days,
        hours=trigger.hours,
        minutes=trigger.minutes,
        seconds=trigger.seconds,
        microseconds=trigger.microseconds,
    )
    return round(span.total_seconds(), 6)


async def reconcile_schedules(scheduler: AsyncScheduler, config: Config) -> dict[str, int]:
    """Make the stored schedules match feeds.yaml: add new feeds, replace changed ones, remove
    feeds that are gone. Idempotent; safe when several nodes do it at once."""
    existing = {s.id: s for s in await scheduler.get_schedules() if s.id.startswith(SCHEDULE_PREFIX)}
    wanted = {schedule_id(f.name): f for f in config.feeds}
    counts = {"added": 0, "replaced": 0, "removed": 0, "kept": 0}
    for sid, feed in wanted.items():
        meta = _schedule_metadata(config, feed.name)
        interval = config.feed_interval(feed)
        current = existing.get(sid)
        if (
            current is not None
            and dict(current.metadata) == meta
            and _trigger_interval(current.trigger) == round(interval, 6)
            and not _fires_too_late(current.next_fire_time, interval + meta["jitter"])
        ):
            counts["kept"] += 1
            continue
        if current is not None:
            # Removed and added anew, not replaced in place (ConflictPolicy.replace): a replace keeps
            # the row's lease, and the node holding it then writes its old trigger back when it
            # releases the schedule, under the new metadata (a 30 s feed polled every second, and
            # every later start saw the metadata it wanted and kept it).
            await scheduler.remove_schedule(sid)
        whole = math.floor(interval)
        trigger = IntervalTrigger(seconds=whole, microseconds=round((interval - whole) * 1e6))
        await scheduler.add_schedule(
            POLL_TASK_ID,
            trigger,
            id=sid,
            args=[feed.name],
            coalesce=CoalescePolicy.latest,
            max_jitter=meta["jitter"] or None,
            metadata=meta,
            conflict_policy=ConflictPolicy.do_nothing,  # another node may add it at the same moment
        )
        counts["replaced" if current is not None else "added"] += 1
    for sid in existing.keys() - wanted.keys():
        await scheduler.remove_schedule(sid)
        counts["removed"] += 1
    return counts


async def watchdog(
    scheduler: AsyncScheduler, period: float = WATCHDOG_PERIOD, config: Config | None = None
) -> None:
    """Wake the schedule and job loops periodically so expired leases are noticed (module doc).
    Local events only: each node wakes itself; nothing is sent to the other nodes. With ``config``:
    when the wall clock went back (against the monotonic clock), the schedules planned for the old
    time are planned again (``reconcile_schedules``), or nothing would be polled until the clock
    caught up."""
    offset = time.time() - time.monotonic()
    while True:
        await anyio.sleep(period)
        step = time.time() - time.monotonic() - offset
        offset += step
        if config is not None and step < -CLOCK_SLACK:
            counts = await reconcile_schedules(scheduler, config)
            log.warning(
                "the wall clock went back; schedules planned again",
                extra={"seconds": round(-step, 1), **counts},
            )
        now = datetime.now(UTC)
        await scheduler.event_broker.publish_local(
            ScheduleUpdated(schedule_id="watchdog", task_id=POLL_TASK_ID, next_fire_time=now)
        )
        await scheduler.event_broker.publish_local(
            JobAdded(job_id=uuid4(), task_id=POLL_TASK_ID, schedule_id=None)
        )


async def run_daemon(
    config: Config,
    *,
    node_id: str | None = None,
    stop: anyio.Event,
    on_started: Callable[[Monitor, AsyncScheduler], Awaitable[None]] | None = None,
) -> None:
    """Run until ``stop`` is set; then let in-flight polls finish (bounded) and stop cleanly.

    Once started, a failure of the database as a whole (a PostgreSQL restart or failover dropping
    the connections, SQLite locked beyond its busy timeout) no longer ends the daemon: the scheduler
    is started again after ``RESTART_MIN``..``RESTART_MAX`` seconds (doubling while it keeps
    failing), as often as it takes. A failure at start-up still ends it (a wrong URL, password or
    database should be reported, not retried in silence)."""
    global _current_monitor, _current_locks, _current_node
    node_id = node_id or default_node_id()
    async with Monitor(config) as monitor:  # opening it migrates the schema (under a lock)
        engine = make_scheduler_engine(normalise_url(config.database))
        locks = FeedLocks(engine)
        _current_monitor, _current_locks, _current_node = monitor, locks, node_id
        single = contextlib.ExitStack()
        try:
            if is_sqlite(config.database) and not single.enter_context(
                sqlite_daemon_lock(normalise_url(config.database))
            ):
                raise NodeConflict(
                    f"another `monitor run` uses {redact(config.database)}; SQLite supports one "
                    "daemon (use PostgreSQL for several)"
                )
            delay = RESTART_MIN
            started: list[float] = []  # when the scheduler last started (``_run_scheduler``)
            while True:
                try:
                    await _run_scheduler(config, monitor, engine, locks, node_id, stop, on_started, started)
                    break
                except Exception as exc:
                    if not started or stop.is_set() or not _database_failure(exc):
                        raise
                    if anyio.current_time() - started[-1] > RESTART_MAX:
                        delay = RESTART_MIN  # it had been running well since the last restart
                    log.error(
                        "scheduler stopped: the database failed; starting it again",
                        extra={"node": node_id, "error": _describe_failure(exc), "retry_in": delay},
                    )
                    # The feed-lock connection went down with the database as a rule, but is only
                    # found out when next used: by the restart's claim of the node id, which then
                    # failed once more. Its locks (no poll runs now) go with it; the restart takes
                    # a fresh connection and claims the node id again.
                    with contextlib.suppress(Exception):  # closing a dead connection may complain
                        await locks.close()
                    with anyio.move_on_after(delay):
                        await stop.wait()
                    if stop.is_set():
                        break
                    delay = min(delay * 2, RESTART_MAX)
        finally:
            _current_monitor, _current_locks = None, None
            single.close()
            await locks.close()
            await engine.dispose()
    log.info("daemon stopped", extra={"node": node_id})


# The scheduler's restarts after a failure of the database (``run_daemon``), in seconds.
RESTART_MIN, RESTART_MAX = 5.0, 60.0


def _errors(exc: BaseException) -> list[BaseException]:
    """The errors in ``exc`` (a task group's, flattened), the cancellations it caused left out."""
    return [leaf for leaf in leaves(exc) if not isinstance(leaf, anyio.get_cancelled_exc_class())]


def _database_failure(exc: BaseException) -> bool:
    """Every error in ``exc`` is a failure of the database as a whole."""
    errors = _errors(exc)
    return bool(errors) and all(database_failed(leaf) for leaf in errors)


def _describe_failure(exc: BaseException) -> str:
    leaf = next(iter(_errors(exc)), exc)
    return (describe(leaf) or f"{type(leaf).__name__}: {leaf}")[:500]


async def _run_scheduler(
    config: Config,
    monitor: Monitor,
    engine: AsyncEngine,
    locks: FeedLocks,
    node_id: str,
    stop: anyio.Event,
    on_started: Callable[[Monitor, AsyncScheduler], Awaitable[None]] | None,
    started: list[float],
) -> None:
    """One run of the scheduler, until ``stop`` is set (or it fails); ``started`` gets the time it
    started polling."""
    # On PostgreSQL the node's id is an advisory lock on the feed-lock connection: taken again after
    # a restart, on a fresh connection (``run_daemon`` closes the old one, which lost it).
    if not is_sqlite(config.database) and not await locks.claim_node(node_id):
        raise NodeConflict(
            f"node id {node_id!r} is in use by a running node; give each node its own --node-id"
        )
    data_store = SQLAlchemyDataStore(engine)
    broker = make_event_broker(config.database, engine)
    scheduler = AsyncScheduler(
        data_store,
        broker,
        identity=node_id,
        lease_duration=timedelta(seconds=LEASE_DURATION),
        cleanup_interval=timedelta(seconds=CLEANUP_PERIOD),
        max_concurrent_jobs=max(config.fetch.concurrency, 10),
    )
    # APScheduler creates its tables on entry; serialise that across nodes (DDL race).
    async with schema_lock(engine):
        await scheduler.__aenter__()
    try:
        await scheduler.configure_task(POLL_TASK_ID, func=poll_feed_job, max_running_jobs=None)
        counts = await reconcile_schedules(scheduler, config)
        log.info("schedules reconciled", extra={"node": node_id, **counts})
        # Other periodic work (e.g. the alert delivery worker) is configured here.
        from monitor.alert.schedule import schedule_delivery  # the alert outbox worker

        await schedule_delivery(scheduler, config)
        await scheduler.start_in_background()
        started.append(anyio.current_time())
        log.info("daemon started", extra={"node": node_id, "feeds": len(config.feeds)})
        async with anyio.create_task_group() as tg:
            tg.start_soon(watchdog, scheduler, WATCHDOG_PERIOD, config)
            if config.ops.enabled:
                await _start_ops(tg, monitor, scheduler, config, node_id)
            if on_started is not None:
                await on_started(monitor, scheduler)
            await stop.wait()
            log.info("stopping: waiting for in-flight polls", extra={"node": node_id})
            monitor.stopping = True
            with anyio.move_on_after(DRAIN_TIMEOUT):
                await monitor.wait_idle()
            tg.cancel_scope.cancel()
        await scheduler.stop()
        await scheduler.wait_until_stopped()
    finally:
        await scheduler.__aexit__(None, None, None)
    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
        released = await release_schedule_leases(engine, node_id)
        if released:
            log.info("released schedule leases", extra={"node": node_id, "schedules": released})


async def _start_ops(
    tg: anyio.abc.TaskGroup, monitor: Monitor, scheduler: AsyncScheduler, config: Config, node_id: str
) -> None:
    """Serve /healthz, /readyz, /metrics. A port in use is logged, not fatal: polling matters more."""
    server = ops.OpsServer(
        ops.OpsState(
            monitor.store,
            lambda: scheduler.state is RunState.started,
            node_id,
            feeds=[feed.name for feed in config.feeds],
        ),
        listen=config.ops.listen,
        port=config.ops.port,
    )
    try:
        await tg.start(server.serve)
    except OSError as exc:
        log.error(
            "ops endpoint could not start",
            extra={"listen": config.ops.listen, "port": config.ops.port, "error": str(exc)},
        )
