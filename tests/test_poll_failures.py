"""`monitor poll` when the database fails under it: one line naming the database, exit 1, not the
task group's traceback."""

from __future__ import annotations

import resource
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
    import sqlite3

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
