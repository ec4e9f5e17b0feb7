"""SQL for cluster mode and operations: PostgreSQL advisory locks, APScheduler lease clean-up, and the
numbers behind /readyz and /metrics. (The storage layer is the only place with SQL.)

Advisory locks are session locks on a dedicated connection: PostgreSQL drops them the moment that
connection goes away, so a SIGKILLed node never leaves a lock behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor.store.migrate import SCHEMA_LOCK_KEY
from monitor.store.models import Delivery, Development, FeedState, Item
from monitor.store.store import Store


def lock_key(namespace: str, name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name`` in ``namespace``."""
    digest = hashlib.blake2b(f"{namespace}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class FeedLocks:
    """Cluster-wide "this feed is being polled" locks: PostgreSQL session advisory locks, all held
    on one connection per node (a node polling 30 feeds at once needs 1 connection, not 30).
    PostgreSQL releases them all when that connection goes away: a SIGKILLed node leaves no lock
    behind. On SQLite (one node) every lock is granted; the process keeps its own in-flight set."""

    RETRY_PERIOD = 0.2

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.enabled = engine.dialect.name == "postgresql"
        self._conn: Any = None
        self._mutex = anyio.Lock()

    async def _run(self, sql: str, key: int) -> Any:
        async with self._mutex:
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                conn = await self.engine.connect()
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                return await self._conn.scalar(text(sql), {"k": key})
            except Exception:
                conn, self._conn = self._conn, None  # locks on it are gone with it; start afresh
                with anyio.CancelScope(shield=True):
                    await conn.invalidate()
                raise

    async def claim_node(self, node_id: str) -> bool:
        """Claim ``node_id`` for this process (an advisory lock on the same connection): false when
        a running node already uses it. Two live nodes with one id would take each other's leases."""
        if not self.enabled:
            return True
        return bool(await self._run("SELECT pg_try_advisory_lock(:k)", lock_key("monitor.node", node_id)))

    @asynccontextmanager
    async def hold(self, feed_name: str, wait: float = 0.0) -> AsyncIterator[bool]:
        """Yield whether this node got the feed's lock, waiting up to ``wait`` seconds for a poll
        elsewhere to finish. Without the lock the caller must not poll."""
        if not self.enabled:
            yield True
            return
        key = lock_key("monitor.poll", feed_name)
        deadline = anyio.current_time() + wait
        while not (got := bool(await self._run("SELECT pg_try_advisory_lock(:k)", key))):
            if anyio.current_time() >= deadline:
                break
            await anyio.sleep(self.RETRY_PERIOD)
        try:
            yield got
        finally:
            if got:
                # If this fails the connection is gone, and the lock with it.
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await self._run("SELECT pg_advisory_unlock(:k)", key)

    async def close(self) -> None:
        """Close the lock connection for real (not back into the pool, where its session and so
        its locks would live on): every lock this node holds is released."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with anyio.CancelScope(shield=True):
                await conn.invalidate()
                await conn.close()


@asynccontextmanager
async def schema_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """The schema lock of ``monitor.store.migrate``, for APScheduler's table creation (its DDL races
    when several nodes start on an empty database at the same moment)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
        await conn.commit()
        try:
            yield
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
            await conn.commit()


async def release_schedule_leases(engine: AsyncEngine, node_id: str) -> int:
    """Give back the schedules this node still holds (APScheduler 4.0.0a6 leaves them leased after
    ``stop()``), so other nodes need not wait for the leases to expire. Their fire times were not
    advanced: the next node to acquire them fires them (coalesced) at once."""
    async with engine.begin() as conn:
        if not await conn.run_sync(lambda c: c.dialect.has_table(c, "schedules")):
            return 0
        result = await conn.execute(
            text("UPDATE schedules SET acquired_by = NULL, acquired_until = NULL WHERE acquired_by = :n"),
            {"n": node_id},
        )
        return result.rowcount or 0


def ping(store: Store) -> None:
    """Raise unless the database answers."""
    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def ops_snapshot(store: Store) -> dict[str, Any]:
    """Counts for /metrics, read at scrape time (so every node reports the cluster-wide numbers)."""
    with store.session() as session:
        deliveries = dict(
            session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        )
        feeds = [
            (name, streak or 0, bool(disabled), polled)
            for name, streak, disabled, polled in session.execute(
                select(FeedState.name, FeedState.error_streak, FeedState.disabled, FeedState.last_polled_at)
            )
        ]
        items = session.scalar(select(func.count()).select_from(Item)) or 0
        developments = session.scalar(select(func.count()).select_from(Development)) or 0
        jobs: int | None = None
        if store.engine.dialect.has_table(session.connection(), "jobs"):
            jobs = session.scalar(text("SELECT count(*) FROM jobs")) or 0
    return {
        "deliveries": {str(k): int(v) for k, v in deliveries.items()},
        "feeds": feeds,
        "items": int(items),
        "developments": int(developments),
        "jobs_queued": jobs,
    }


@contextmanager
def sqlite_daemon_lock(url: str) -> Iterator[bool]:
    """One daemon per SQLite database (APScheduler's SQLite store does not support several
    schedulers: they run jobs twice). Yields false when another daemon holds the lock file
    ``<database>.daemon.lock``; the kernel releases it when that process dies."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield True
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield True
        return
    # Named after the file itself, not the path given: the same database reached through a symlink
    # (or another relative path) must find the same lock.
    path = Path(os.path.realpath(database) + ".daemon.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
