"""`monitor poll` stopped by a signal: SIGTERM stops it as SIGINT does (the feeds written are kept,
the parse pool is shut down, exit 1), and no process of the parse pool outlives the poll, not even
when the poll is killed (SIGKILL) before it could shut the pool down."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest

from tests.conftest import Project
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer
from tests.waiting import wait_for

FAST = [f"schnell{i}" for i in range(20)]
SLOW = [f"langsam{i}" for i in range(20)]
# Fetch limits far above the test's run time: the slow feeds are in flight when the signal comes.
FETCH = {"timeout": "60s", "connect_timeout": "10s", "read_timeout": "60s", "concurrency": 64, "per_host": 64}


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie waits to be reaped: it is gone


def _descendants(root: int) -> dict[int, int]:
    """pid -> parent pid of the live processes below ``root``."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None and stat[0] not in ("Z", "X"):
            parents[int(entry)] = stat[1]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = ppid
                todo.append(pid)
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _written(project: Project) -> int:
    """Feeds the running poll has committed so far."""
    try:
        with sqlite3.connect(project.db_path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM feed_state WHERE last_polled_at IS NOT NULL").fetchone()[
                0
            ]
    except sqlite3.Error:  # no schema yet
        return 0


@dataclass
class _Poll:
    proc: subprocess.Popen[str]
    pool: dict[int, int] = field(default_factory=dict)  # pid -> parent pid
    stderr: str = ""  # once it ended

    def pool_ended(self) -> bool:
        return not any(_alive(pid) for pid in self.pool)


@contextlib.contextmanager
def _polling(project: Project, server: FeedServer) -> Iterator[_Poll]:
    """A `monitor poll` of 40 feeds, 20 of which never answer while it runs, once the 20 others are
    written; with the pool's processes: the resource tracker, the forkserver and its two workers.
    Whatever survives the test is killed (by pid) on the way out."""
    release = threading.Event()

    def hang(req: BaseHTTPRequestHandler) -> None:
        release.wait(60)
        with contextlib.suppress(OSError):
            req.send_response(503)
            req.send_header("Content-Length", "0")
            req.end_headers()

    for i, name in enumerate(FAST):
        entries = [FakeEntry(f"{name}-{j}", f"Meldung {j}", f"Text {i} {j}. " * 20) for j in range(30)]
        server.put(f"/{name}.xml", rss(entries))
    for name in SLOW:
        server.route(f"/{name}.xml", hang)
    project.write(
        {"fetch": FETCH, "feeds": [{"name": n, "url": server.url(f"/{n}.xml")} for n in FAST + SLOW]}
    )
    # Two workers: a first poll of 40 feeds starts the pool up front (PRESTART_PARSE_POOL).
    poll = _Poll(project.spawn("poll", env={"MONITOR_PARSE_WORKERS": "2"}))
    proc, pool = poll.proc, poll.pool
    try:

        def pool_started() -> bool:
            pool.clear()
            pool.update(_descendants(proc.pid))
            servers = [p for p in pool if "multiprocessing.forkserver" in _cmdline(p) and pool[p] == proc.pid]
            return len(servers) == 1 and sum(ppid == servers[0] for ppid in pool.values()) == 2

        wait_for(pool_started, timeout=30, what="the forkserver and its two workers")
        assert any("multiprocessing.resource_tracker" in _cmdline(p) for p in pool), pool
        wait_for(lambda: _written(project) == len(FAST), timeout=30, what="the fast feeds written")
        wait_for(
            lambda: len({r.path for r in server.requests if "langsam" in r.path}) == len(SLOW), timeout=30
        )
        yield poll
    finally:
        release.set()
        for pid in [proc.pid, *pool]:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        poll.stderr = proc.communicate(timeout=30)[1]


def test_sigterm_stops_a_poll_cleanly_and_ends_its_parse_pool(
    project: Project, feed_server: FeedServer
) -> None:
    with _polling(project, feed_server) as poll:
        poll.proc.send_signal(signal.SIGTERM)
        poll.proc.wait(timeout=30)
        wait_for(poll.pool_ended, timeout=10, what="the pool's processes to end")
    err = poll.stderr
    assert poll.proc.returncode == 1, err  # README: stopped by a signal
    assert 'info monitor "signal received, stopping" signal=SIGTERM' in err
    assert err.strip().splitlines()[-1] == (
        "monitor: error: stopped by SIGTERM: the feeds written until then are kept, the others were not polled"
    )
    assert "Traceback" not in err and "parse pool failed" not in err, err
    # What was written stays; the feeds in flight were not written, none is recorded as failing.
    feeds = {f["name"]: f for f in project.cli("feeds", "--json").json()}
    assert {feeds[n]["status"] for n in FAST} == {"ok"} and {feeds[n]["items"] for n in FAST} == {30}
    assert {feeds[n]["status"] for n in SLOW} == {"new"}


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the workers watch the monitor through a pidfd")
def test_the_parse_pool_ends_with_a_killed_poll(project: Project, feed_server: FeedServer) -> None:
    with _polling(project, feed_server) as poll:
        poll.proc.send_signal(signal.SIGKILL)  # no chance to shut the pool down
        poll.proc.wait(timeout=30)
        wait_for(poll.pool_ended, timeout=10, what="the pool's processes to end")
    assert poll.proc.returncode == -signal.SIGKILL
