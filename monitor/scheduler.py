"""The daemon's scheduler: APScheduler 4 wiring, reconciliation with feeds.yaml, watchdog, shutdown.

Design notes (see ../shared/notes/apscheduler-4-findings.md for the measurements behind them):
- Schedules live in the monitor's own database (APScheduler's SQLAlchemy data store), one per feed,
  id ``poll:<feed name>``, added with ``ConflictPolicy.do_nothing`` so a restart keeps their phase;
  a schedule whose interval/jitter changed in feeds.yaml is replaced, a removed feed's is removed.
- The poll task has ``max_running_jobs=None``: APScheduler's limit is per task and cluster-wide, so
  it cannot mean "one poll per feed". ``Monitor.poll_feed`` refuses a second concurrent poll of the
  same feed in one process, and the store serialises writes per feed across processes.
- The node identity is stable (``--node-id``, default the host name): a restart with a new identity
  can hang on leases its predecessor left behind.
- A watchdog wakes the scheduler every ``WATCHDOG_PERIOD`` seconds, so schedules whose leases a dead
  or stopped node left behind are picked up once the lease expires (APScheduler 4.0.0a6 otherwise
  sleeps until a schedule event that never comes). Bound: lease duration + watchdog period.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from apscheduler import AsyncScheduler, ConflictPolicy
from apscheduler._enums import CoalescePolicy
from apscheduler._events import ScheduleUpdated
from apscheduler.abc import EventBroker
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.eventbrokers.local import LocalEventBroker
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from monitor.config import Config
from monitor.pipeline import Monitor
from monitor.store.database import _sqlite_pragmas, async_url, is_sqlite, normalise_url

log = logging.getLogger(__name__)

POLL_TASK_ID = "monitor.poll_feed"
SCHEDULE_PREFIX = "poll:"
LEASE_DURATION = 30.0  # seconds a node may hold a schedule or job before others may take it
WATCHDOG_PERIOD = 5.0
# Bound on how long schedules abandoned by a crashed node stay idle (documented in the README).
RECOVERY_BOUND = LEASE_DURATION + WATCHDOG_PERIOD
DRAIN_TIMEOUT = 20.0  # seconds in-flight polls get to finish on SIGTERM

# The job function must be importable by reference; it reaches the running Monitor through here.
_current_monitor: Monitor | None = None


def default_node_id() -> str:
    return socket.gethostname() or "monitor"


def schedule_id(feed_name: str) -> str:
    return SCHEDULE_PREFIX + feed_name


async def poll_feed_job(feed_name: str) -> dict[str, Any]:
    """The scheduled task: one poll of one feed. Safe to re-run (polls are idempotent)."""
    monitor = _current_monitor
    if monitor is None or monitor.stopping:
        return {"feed": feed_name, "status": "skipped"}
    report = await monitor.poll_feed(feed_name, scheduled=True)
    level = logging.WARNING if report.status == "error" else logging.INFO
    log.log(
        level,
        "polled feed",
        extra={
            "feed": feed_name,
            "status": report.status,
            "new": report.new,
            "updated": report.updated,
            "matched": report.matched,
            "developments": report.developments,
            "error": report.error,
            "elapsed": round(report.elapsed, 3),
        },
    )
    return {"feed": feed_name, "status": report.status, "new": report.new}


def make_scheduler_engine(database_url: str) -> AsyncEngine:
    url = async_url(database_url)
    if is_sqlite(database_url):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


def make_event_broker(database_url: str, engine: AsyncEngine) -> EventBroker:
    if is_sqlite(database_url):
        return LocalEventBroker()
    # PsycopgEventBroker works with current anyio (the asyncpg one drops events on anyio >= 4.14).
    from apscheduler.eventbrokers.psycopg import PsycopgEventBroker

    return PsycopgEventBroker.from_async_sqla_engine(engine)


def _schedule_metadata(config: Config, feed_name: str) -> dict[str, Any]:
    feed = config.feed(feed_name)
    return {"interval": config.feed_interval(feed), "jitter": _jitter(config, feed_name)}


def _jitter(config: Config, feed_name: str) -> float:
    # Never more than a tenth of the interval, so a 1 s feed still polls about every second.
    return min(config.fetch.jitter, config.feed_interval(config.feed(feed_name)) / 10)


async def reconcile_schedules(scheduler: AsyncScheduler, config: Config) -> dict[str, int]:
    """Make the stored schedules match feeds.yaml: add new feeds, replace changed ones, remove
    feeds that are gone. Idempotent; safe when several nodes do it at once."""
    existing = {s.id: s for s in await scheduler.get_schedules() if s.id.startswith(SCHEDULE_PREFIX)}
    wanted = {schedule_id(f.name): f for f in config.feeds}
    counts = {"added": 0, "replaced": 0, "removed": 0, "kept": 0}
    for sid, feed in wanted.items():
        meta = _schedule_metadata(config, feed.name)
        current = existing.get(sid)
        if current is not None and dict(current.metadata) == meta:
            counts["kept"] += 1
            continue
        interval = config.feed_interval(feed)
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
            conflict_policy=ConflictPolicy.replace if current is not None else ConflictPolicy.do_nothing,
        )
        counts["replaced" if current is not None else "added"] += 1
    for sid in existing.keys() - wanted.keys():
        await scheduler.remove_schedule(sid)
        counts["removed"] += 1
    return counts


async def watchdog(scheduler: AsyncScheduler, period: float = WATCHDOG_PERIOD) -> None:
    """Wake the schedule loop periodically so expired leases are noticed (see module doc)."""
    while True:
        await anyio.sleep(period)
        await scheduler.event_broker.publish_local(
            ScheduleUpdated(schedule_id="watchdog", task_id=POLL_TASK_ID, next_fire_time=datetime.now(UTC))
        )


async def run_daemon(
    config: Config,
    *,
    node_id: str | None = None,
    stop: anyio.Event,
    on_started: Callable[[Monitor, AsyncScheduler], Awaitable[None]] | None = None,
) -> None:
    """Run until ``stop`` is set; then let in-flight polls finish (bounded) and stop cleanly."""
    global _current_monitor
    node_id = node_id or default_node_id()
    async with Monitor(config) as monitor:
        _current_monitor = monitor
        engine = make_scheduler_engine(normalise_url(config.database))
        try:
            data_store = SQLAlchemyDataStore(engine)
            broker = make_event_broker(config.database, engine)
            async with AsyncScheduler(
                data_store,
                broker,
                identity=node_id,
                lease_duration=timedelta(seconds=LEASE_DURATION),
                max_concurrent_jobs=max(config.fetch.concurrency, 10),
            ) as scheduler:
                await scheduler.configure_task(POLL_TASK_ID, func=poll_feed_job, max_running_jobs=None)
                counts = await reconcile_schedules(scheduler, config)
                log.info("schedules reconciled", extra={"node": node_id, **counts})
                await scheduler.start_in_background()
                log.info("daemon started", extra={"node": node_id, "feeds": len(config.feeds)})
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watchdog, scheduler)
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
            _current_monitor = None
            await engine.dispose()
    log.info("daemon stopped", extra={"node": node_id})
