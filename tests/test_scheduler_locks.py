"""Building blocks of cluster mode: the per-feed poll locks (real PostgreSQL) and the NOTIFY-size
guard for APScheduler's psycopg event broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
from apscheduler import JobOutcome
from apscheduler._events import JobAdded, JobReleased

from monitor.scheduler import fit_for_notify, make_event_broker, make_scheduler_engine
from monitor.store.cluster import FeedLocks, lock_key
from tests.clusterkit import pg_url

__all__ = ["pg_url"]  # the fixture


def test_feed_locks_exclude_other_nodes_and_die_with_their_holder(pg_url: str) -> None:
    async def main() -> list[bool]:
        seen: list[bool] = []
        engine_a, engine_b = make_scheduler_engine(pg_url), make_scheduler_engine(pg_url)
        node_a, node_b = FeedLocks(engine_a), FeedLocks(engine_b)
        try:
            async with node_a.hold("tagesschau") as got_a:
                seen.append(got_a)
                async with node_b.hold("tagesschau", wait=0.5) as got_b:
                    seen.append(got_b)  # busy: A polls it
                async with node_b.hold("spiegel") as other:
                    seen.append(other)  # another feed is free
            async with node_b.hold("tagesschau") as after_release:
                seen.append(after_release)
            # A node dies holding a lock: its connection goes, and PostgreSQL frees the lock.
            async with node_a.hold("zeit") as got:
                seen.append(got)
                await node_a.close()  # what a SIGKILL does to the connection
                async with node_b.hold("zeit", wait=2) as taken_over:
                    seen.append(taken_over)
        finally:
            await node_a.close()
            await node_b.close()
            await engine_a.dispose()
            await engine_b.dispose()
        return seen

    assert anyio.run(main) == [True, False, True, True, True, True]


def test_waiting_for_a_feed_lock_gets_it_when_the_other_poll_ends(pg_url: str) -> None:
    async def main() -> tuple[bool, float]:
        engine = make_scheduler_engine(pg_url)
        node_a, node_b = FeedLocks(engine), FeedLocks(make_scheduler_engine(pg_url))
        done = anyio.Event()
        result: dict[str, object] = {}

        async def a() -> None:
            async with node_a.hold("ndr") as got:
                assert got
                done.set()
                await anyio.sleep(0.6)

        async def b() -> None:
            await done.wait()
            start = anyio.current_time()
            async with node_b.hold("ndr", wait=10) as got:
                result["got"], result["waited"] = got, anyio.current_time() - start

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(a)
                tg.start_soon(b)
        finally:
            await node_a.close()
            await node_b.close()
            await engine.dispose()
            await node_b.engine.dispose()
        return bool(result["got"]), float(result["waited"])  # type: ignore[arg-type]

    got, waited = anyio.run(main)
    assert got and 0.3 <= waited < 5


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("monitor.poll", "tagesschau") == lock_key("monitor.poll", "tagesschau")
    keys = {lock_key("monitor.poll", f"feed{n}") for n in range(1000)}
    assert len(keys) == 1000
    assert all(-(2**63) <= k < 2**63 for k in keys)


def test_failed_job_events_fit_in_a_postgres_notify() -> None:
    broker = make_event_broker(
        "postgresql+psycopg://u@127.0.0.1/x", make_scheduler_engine("postgresql+psycopg://u@127.0.0.1/x")
    )
    failed = JobReleased(
        job_id=uuid.uuid4(),
        scheduler_id="node1",
        task_id="monitor.deliver",
        scheduled_start=None,
        started_at=None,
        outcome=JobOutcome.error,
        exception_type="sqlalchemy.exc.OperationalError",
        exception_message="connection failed " * 1000,
        exception_traceback=["  File ..., line 1, in deliver\n" * 20] * 100,
    )
    assert len(broker.generate_notification_str(failed)) > 7999  # what 4.0.0a6 would refuse
    fitted = fit_for_notify(failed)
    assert len(broker.generate_notification_str(fitted)) <= 7999
    assert fitted.exception_type == failed.exception_type and fitted.outcome is JobOutcome.error
    other = JobAdded(job_id=uuid.uuid4(), task_id="t", schedule_id=None)
    assert fit_for_notify(other) is other


def test_one_daemon_per_sqlite_file_also_through_a_symlink(tmp_path: Path) -> None:
    """The lock is named after the database file itself: a second daemon reaching the same file
    through a symlink (or another path) is refused like one using the same path."""
    from monitor.store.cluster import sqlite_daemon_lock

    real = tmp_path / "monitor.sqlite3"
    real.write_bytes(b"")
    link = tmp_path / "link.sqlite3"
    link.symlink_to(real)
    (tmp_path / "sub").mkdir()
    with sqlite_daemon_lock(f"sqlite:///{real}") as first:
        assert first
        with sqlite_daemon_lock(f"sqlite:///{link}") as through_link:
            assert not through_link
        with sqlite_daemon_lock(f"sqlite:///{tmp_path / 'sub' / '..' / 'monitor.sqlite3'}") as other_path:
            assert not other_path
    with sqlite_daemon_lock(f"sqlite:///{link}") as after:
        assert after  # released with the first


def test_postgres_connections_have_keepalives_at_both_ends(pg_url: str) -> None:
    """A node whose host vanishes (power, network; no FIN, no RST) holds its feed locks and node id
    until the server drops its connection: PostgreSQL's default keepalive notices after ~2 h 11 min,
    the server side of our connections after ~25 s. Settings the URL gives itself stand."""
    from sqlalchemy import text

    from monitor.store.database import make_engine

    def server_side(conn) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
        return tuple(
            conn.execute(text(f"SHOW {name}")).scalar()
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        )

    async def locks_connection() -> tuple[str, ...]:
        engine = make_scheduler_engine(pg_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(server_side)
        finally:
            await engine.dispose()

    store_engine = make_engine(pg_url)
    own = make_engine(pg_url + "?options=-c%20tcp_keepalives_idle%3D42")
    try:
        with store_engine.connect() as conn:
            assert server_side(conn) == ("10", "5", "3")
        with own.connect() as conn:
            assert server_side(conn) == ("42", "5", "3")
    finally:
        store_engine.dispose()
        own.dispose()
    assert anyio.run(locks_connection) == ("10", "5", "3")


def test_the_event_brokers_listen_connection_has_keepalives_at_both_ends(pg_url: str) -> None:
    """The connection APScheduler's psycopg event broker LISTENs on waits for notifications and
    sends nothing: a server that vanishes would leave it waiting for hours without keepalives. The
    broker connects with its ``conninfo`` and ``options``, as here."""
    from psycopg import AsyncConnection

    async def broker_connection() -> tuple[tuple[str, ...], dict[str, str]]:
        engine = make_scheduler_engine(pg_url)
        try:
            broker = make_event_broker(pg_url, engine)
            conn = await AsyncConnection.connect(broker.conninfo, **broker.options)  # type: ignore[attr-defined]
            try:
                server = []
                for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count"):
                    cursor = await conn.execute(f"SHOW {name}")
                    row = await cursor.fetchone()
                    assert row is not None
                    server.append(row[0])
                return tuple(server), conn.info.get_parameters()
            finally:
                await conn.close()
        finally:
            await engine.dispose()

    server, client = anyio.run(broker_connection)
    assert server == ("10", "5", "3")
    assert (
        client.get("keepalives_idle"),
        client.get("keepalives_interval"),
        client.get("keepalives_count"),
    ) == (
        "10",
        "5",
        "3",
    )
