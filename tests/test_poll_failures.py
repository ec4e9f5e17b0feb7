"""`monitor poll` when something fails under it: the database as a whole (one line naming the
database, exit 1, not the task group's traceback), or one feed's poll (that feed fails alone)."""

from __future__ import annotations

import resource
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from monitor.cli import State, handle_errors
from tests.conftest import Project
from tests.feeds import FakeEntry, rss
from tests.misbehaving import FAST_FETCH
from tests.servers import FeedServer

FEEDS = [f"blatt{i}" for i in range(12)]


def _database_files(project: Project) -> list[Path]:
    return [p for p in project.dir.iterdir() if p.name.startswith(project.db_path.name)]


def test_a_full_disk_during_a_poll_is_one_line_naming_the_database(
    project: Project, feed_server: FeedServer
) -> None:
    for name in FEEDS:
        feed_server.put(f"/{name}.xml", rss([FakeEntry(f"{name}-0", "Wetterbericht", "Sonnig und mild.")]))
    project.write(
        {"fetch": FAST_FETCH, "feeds": [{"name": n, "url": feed_server.url(f"/{n}.xml")} for n in FEEDS]}
    )
    first = project.cli("poll")
    assert first.exit_code == 0, first.stderr

    # Each feed now brings ~150 KB of new items; the poll may grow no file by more than 64 KiB
    # (RLIMIT_FSIZE: the write fails with EFBIG, as it does with ENOSPC on a full disk, and SQLite
    # reports "database or disk is full" or "disk I/O error").
    for name in FEEDS:
        entries = [FakeEntry(f"{name}-{j}", f"Meldung {j}", "Ein langer Text. " * 80) for j in range(1, 100)]
        feed_server.put(f"/{name}.xml", rss(entries))
    limit = max(p.stat().st_size for p in _database_files(project)) + 64 * 1024

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = project.spawn("poll", preexec_fn=small_disk)
    _out, err = proc.communicate(timeout=60)

    assert proc.returncode == 1, err
    assert "Traceback" not in err and "Exception Group" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("monitor: error:")]
    assert errors == [err.strip().splitlines()[-1]], err
    assert errors[0].startswith("monitor: error: database: OperationalError: "), err
    assert "disk is full" in errors[0] or "disk I/O error" in errors[0]
    assert str(project.db_path) in errors[0]


@click.command()
@click.argument("what")
@click.pass_obj
@handle_errors
def _failing(state: State, what: str) -> None:
    locked = sqlite3.OperationalError("database is locked")
    if what == "nested":  # as the task groups of a poll and the daemon nest them
        raise ExceptionGroup("poll", [ExceptionGroup("feeds", [locked, locked]), OSError(28, "No space")])
    raise ExceptionGroup("poll", [locked, ValueError("a bug in one feed's poll")])


def test_exception_groups_are_unwrapped_unless_they_hold_a_bug(tmp_path: Path) -> None:
    runner = CliRunner()
    nested = runner.invoke(_failing, ["nested"], obj=State(None))
    assert nested.exit_code == 1
    assert nested.stderr == "monitor: error: database: OperationalError: database is locked\n"

    # A bug is not hidden behind a database error that happened at the same time.
    with pytest.raises(ExceptionGroup) as raised:
        runner.invoke(_failing, ["bug"], obj=State(None), catch_exceptions=False)
    assert any(isinstance(e, ValueError) for e in raised.value.exceptions)


def refuse_items_of(db_path: Path, feed: str) -> None:
    """From now on the SQLite database refuses new items of ``feed`` (trigger
    ``refuse_items_of_<feed>``; its message: "items of <feed> refused")."""
    with sqlite3.connect(db_path) as db:
        db.execute(
            f"CREATE TRIGGER refuse_items_of_{feed} BEFORE INSERT ON item"
            f" WHEN NEW.feed_id = (SELECT id FROM feed_state WHERE name = '{feed}')"
            f" BEGIN SELECT RAISE(ABORT, 'items of {feed} refused'); END"
        )


def test_one_feeds_failing_write_fails_that_feed_alone(project: Project, feed_server: FeedServer) -> None:
    names = ["eins", "kaputt", "zwei"]
    for name in names:
        feed_server.put(f"/{name}.xml", rss([]))
    project.write(
        {"fetch": FAST_FETCH, "feeds": [{"name": n, "url": feed_server.url(f"/{n}.xml")} for n in names]}
    )
    assert project.cli("poll").exit_code == 0
    # The database refuses the items of one feed (as a storage bug for one feed's data would): a
    # real error from a real write, raised inside that feed's poll.
    refuse_items_of(project.db_path, "kaputt")
    for name in names:
        entries = [FakeEntry(f"{name}-{j}", f"Meldung {j} aus {name}", "Sonnig und mild.") for j in range(3)]
        feed_server.put(f"/{name}.xml", rss(entries))

    result = project.cli("poll")

    assert result.exit_code == 1, result.stderr  # README: a feed's poll failed inside the monitor
    assert "polled 3 feeds" in result.stdout and "3 failed" not in result.stdout
    assert "failed: kaputt: internal: IntegrityError: " in result.stdout
    assert "items of kaputt refused" in result.stdout
    assert 'error monitor.pipeline "poll of a feed failed" feed=kaputt' in result.stderr
    assert "Traceback" in result.stderr  # logged with it, for the bug report
    assert result.stderr.strip().splitlines()[-1] == (
        "monitor: error: the poll of 1 feed(s) failed inside the monitor (logged): kaputt"
    )
    # The other feeds were written; the failing one's error is recorded, its items are not.
    with sqlite3.connect(project.db_path) as db:
        stored = dict(
            db.execute(
                "SELECT f.name, COUNT(i.id) FROM feed_state f LEFT JOIN item i ON i.feed_id = f.id GROUP BY f.name"
            )
        )
    assert stored == {"eins": 3, "kaputt": 0, "zwei": 3}
    feeds = {f["name"]: f for f in project.cli("feeds", "--json").json()}
    assert feeds["kaputt"]["status"] == "failing"
    assert feeds["kaputt"]["last_error_kind"] == "internal"
    assert "items of kaputt refused" in feeds["kaputt"]["last_error"]
    assert feeds["eins"]["status"] == feeds["zwei"]["status"] == "ok"

    # Not a failure remembered for good: once the database takes the items, the next poll stores them.
    with sqlite3.connect(project.db_path) as db:
        db.execute("DROP TRIGGER refuse_items_of_kaputt")
    again = project.cli("poll")
    assert again.exit_code == 0, again.stderr
    feeds = {f["name"]: f for f in project.cli("feeds", "--json").json()}
    assert feeds["kaputt"]["status"] == "ok" and feeds["kaputt"]["items"] == 3


def test_which_database_errors_stop_a_poll(tmp_path: Path) -> None:
    """Real errors of a real SQLite file: a lock held by another connection is the database's (every
    feed's write would wait for it), a constraint is one write's; so is a feed the store lacks."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from monitor.store import StoreError
    from monitor.store.errors import database_failed

    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x UNIQUE)")
    holder.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as constraint:
        holder.execute("INSERT INTO t VALUES (1)")
    holder.execute("BEGIN IMMEDIATE")  # the write lock
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (2)")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with pytest.raises(OperationalError) as locked_orm, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (3)"))
    engine.dispose()
    holder.execute("ROLLBACK")
    wrapped = StoreError("writing polls failed")
    wrapped.__cause__ = locked.value

    assert database_failed(locked.value) and database_failed(locked_orm.value) and database_failed(wrapped)
    assert not database_failed(constraint.value)
    assert not database_failed(StoreError("feed 'x' is not in the database (not configured?)"))
    assert not database_failed(ValueError("cannot convert float NaN to integer"))


def test_which_postgresql_errors_stop_a_poll() -> None:
    """Real errors from PostgreSQL: a value the client cannot send (a NUL byte in text) is that
    write's, not the database's; a connection that cannot be made is the database's."""
    import psycopg

    from monitor.store.errors import database_failed
    from tests.clusterkit import fresh_pg_database

    with fresh_pg_database("sm_errors") as url, psycopg.connect(url.replace("+psycopg", "")) as conn:
        with pytest.raises(psycopg.DataError) as nul:
            conn.execute("SELECT %s::text", ("Gipfel\x00",))
        with pytest.raises(psycopg.errors.UndefinedTable) as missing:
            conn.execute("SELECT * FROM fehlt")
    with pytest.raises(psycopg.OperationalError) as unreachable:
        psycopg.connect("postgresql://postgres@127.0.0.1:1/test", connect_timeout=3)
    assert nul.value.sqlstate is None and not database_failed(nul.value)
    assert not database_failed(missing.value)
    assert database_failed(unreachable.value)
