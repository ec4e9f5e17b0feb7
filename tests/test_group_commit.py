"""Group commit on SQLite (``Monitor._poll_commits`` -> ``Store.poll_batch``): many feeds' poll
writes in one transaction, with the same results as one transaction per feed, and one feed that
fails its write fails only itself. ``GroupCommit`` itself: batches, and what a failed or cancelled
batch reports."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from sqlmodel import func, select

from monitor.fetch import FetchResult
from monitor.group_commit import GroupCommit
from monitor.parse import parse_feed
from monitor.pipeline import _PollWrite
from monitor.store import Item, StoreError
from tests.feeds import FakeEntry, rss
from tests.misbehaving import monitor_config, running_monitor
from tests.servers import FeedServer


def _feed(i: int) -> str:
    return rss(
        [
            FakeEntry(
                f"f{i}-{j}", f"Gipfel in Budapest: Meldung {j} aus Quelle {i}", f"Text {j} über Straßen."
            )
            for j in range(5)
        ]
    )


def test_a_poll_of_many_changed_feeds_stores_every_item_once(tmp_path: Path) -> None:
    with FeedServer() as server:
        names = [f"quelle{i}" for i in range(30)]
        for i, name in enumerate(names):
            server.put(f"/{name}.xml", _feed(i))
        feeds = [{"name": n, "url": server.url(f"/{n}.xml")} for n in names]
        with running_monitor(monitor_config(tmp_path, feeds)) as (monitor, portal):
            assert monitor._group_commit  # SQLite
            summary = portal.call(monitor.poll)
            assert [r.status for r in summary.reports] == ["ok"] * 30
            assert [r.new for r in summary.reports] == [5] * 30
            with monitor.store.session() as session:
                assert session.scalar(select(func.count()).select_from(Item)) == 150
            for name in names:
                state = monitor.store.feed_state(name)
                assert state is not None and state.polls_total == 1 and state.items_total == 5


def test_one_failing_write_fails_only_its_own_feed(tmp_path: Path) -> None:
    with FeedServer() as server:
        for name in ("a", "b"):
            server.put(f"/{name}.xml", _feed(ord(name)))
        feeds = [{"name": n, "url": server.url(f"/{n}.xml")} for n in ("a", "b")]
        story = {"id": "gipfel", "title": "Gipfel in Budapest", "baseline": {"text": "Gipfel in Budapest."}}
        story["keywords"] = ["Budapest"]
        with running_monitor(monitor_config(tmp_path, feeds, stories=[story])) as (monitor, portal):
            portal.call(monitor.poll)  # creates the rows; nothing new below for a and b
            assert set(monitor.matchers) == {"gipfel"}  # the story state the first poll built

            def job(name: str, i: int) -> _PollWrite:
                body = _feed(100 + i).encode()
                result = FetchResult(url=f"http://x/{name}", final_url=f"http://x/{name}")
                result.status, result.body = 200, body
                parsed = parse_feed(body, url=result.final_url, fetched_at=datetime.now(UTC))
                return _PollWrite(name, result, parsed, f"hash{i}")

            first_matcher = monitor.matchers["gipfel"]
            # "gone" is not in the database: its write raises; the batch is redone feed by feed.
            jobs = [job("a", 1), job("gone", 2), job("b", 3)]
            monitor._write_poll_batch(jobs)
            assert jobs[0].error is None and jobs[2].error is None
            assert jobs[0].report is not None and jobs[0].report.new == 5
            assert jobs[2].report is not None and jobs[2].report.new == 5
            assert isinstance(jobs[1].error, StoreError) and jobs[1].report is None
            # The rolled-back batch had matched a's and b's items: the story state is rebuilt from
            # the database (by the redone writes), not kept with those items counted twice.
            assert set(monitor.matchers) == {"gipfel"}
            assert monitor.matchers["gipfel"] is not first_matcher
            with monitor.store.session() as session:
                assert session.scalar(select(func.count()).select_from(Item)) == 20
            with pytest.raises(StoreError):
                monitor._write_poll(job("gone", 2))


@dataclass
class _Job:
    n: int
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None
    result: int | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None


class _Broken(Exception):
    pass


def _commits(write, batch_max: int | None = 2) -> GroupCommit[_Job]:  # type: ignore[no-untyped-def]
    return GroupCommit(
        write, limiter=anyio.CapacityLimiter(1), batch_max=batch_max, failure=lambda exc: _Broken(repr(exc))
    )


def test_group_commit_writes_queued_jobs_in_bounded_batches() -> None:
    batches: list[list[int]] = []

    def write(jobs: list[_Job]) -> None:
        batches.append([j.n for j in jobs])
        for j in jobs:
            j.result = j.n * 10

    async def main() -> list[_Job]:
        commits = _commits(write)
        jobs = [_Job(n) for n in range(5)]
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(commits.write, job)
        return jobs

    jobs = anyio.run(main)
    assert [j.result for j in jobs] == [0, 10, 20, 30, 40]
    # the first job's task flushes alone; the four queued meanwhile go in batches of two
    assert batches == [[0], [1, 2], [3, 4]]


def test_a_cancelled_flush_keeps_what_its_thread_wrote_and_fails_the_rest() -> None:
    """Shutdown cancels the task that flushes while its batch is in the thread: the thread runs to
    its end, so that batch's jobs keep their outcome; jobs queued behind it fail (not known to be
    written) instead of waiting forever, and nothing is written twice."""
    entered, release = threading.Event(), threading.Event()
    written: list[int] = []

    def write(jobs: list[_Job]) -> None:
        entered.set()
        release.wait(30)
        for j in jobs:
            written.append(j.n)
            j.result = j.n

    first, second = _Job(1), _Job(2)
    outcomes: dict[str, str] = {}

    async def main() -> None:
        commits = _commits(write, batch_max=None)
        flusher = anyio.CancelScope()

        async def run_first() -> None:
            with flusher:
                await commits.write(first)
                outcomes["first"] = "returned"

        async def run_second() -> None:
            try:
                await commits.write(second)
                outcomes["second"] = "returned"
            except _Broken:
                outcomes["second"] = "failed"

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_first)
            await anyio.to_thread.run_sync(entered.wait)  # the first batch is in the thread
            tg.start_soon(run_second)
            await anyio.wait_all_tasks_blocked()  # the second job is queued behind it
            flusher.cancel()
            release.set()
        assert flusher.cancelled_caught

    anyio.run(main)
    assert written == [1]  # the second job was never written, nor the first twice
    assert (first.result, first.error) == (1, None)  # written: its outcome stands
    assert outcomes == {"second": "failed"} and isinstance(second.error, _Broken)


def test_expected_writers_are_gathered_into_one_batch() -> None:
    """``monitor poll``: the first job does not flush alone while the other feeds of the poll can
    still join its batch; a writer that settles without a job (a 304, an error) is not waited for."""
    batches: list[list[int]] = []

    def write(jobs: list[_Job]) -> None:
        batches.append([j.n for j in jobs])
        for j in jobs:
            j.result = j.n

    async def main() -> None:
        commits = _commits(write, batch_max=10)
        commits.expect(["a", "b", "c", "d"])
        go_b, go_c = anyio.Event(), anyio.Event()

        async def writer(key: str, n: int, after: anyio.Event | None) -> None:
            if after is not None:
                await after.wait()
            await commits.write(_Job(n), key)

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer, "a", 1, None)
            tg.start_soon(writer, "c", 3, go_c)
            await anyio.wait_all_tasks_blocked()  # a is queued, its flush waits for b, c and d
            assert batches == []
            commits.settle("d")  # d brought nothing to write
            go_c.set()
            await anyio.wait_all_tasks_blocked()
            assert batches == []  # b can still join
            tg.start_soon(writer, "b", 2, go_b)
            go_b.set()
        assert batches == [[1, 3, 2]]

    anyio.run(main)


def test_a_gathered_batch_waits_for_its_expected_writers_no_longer_than_the_gather_time() -> None:
    """A feed that hangs does not hold back the writes of the feeds that answered: the batch goes
    once its first job has waited ``gather`` seconds."""
    batches: list[list[int]] = []

    def write(jobs: list[_Job]) -> None:
        batches.append([j.n for j in jobs])
        for j in jobs:
            j.result = j.n

    async def main() -> float:
        commits = GroupCommit(
            write, limiter=anyio.CapacityLimiter(1), batch_max=10, failure=_Broken, gather=0.2
        )
        commits.expect(["fast", "hanging"])
        started = anyio.current_time()
        await commits.write(_Job(1), "fast")  # returns although "hanging" never writes nor settles
        return anyio.current_time() - started

    waited = anyio.run(main)
    assert batches == [[1]]
    assert waited >= 0.2


def test_a_poll_stopped_while_its_batch_gathers_still_writes_what_was_gathered() -> None:
    """SIGTERM (or a sibling's failure) cancels the poll while a batch waits for more feeds: the
    feeds already fetched and parsed are written (as they would have been without the wait), once,
    and the group commit takes the next poll's writes as before."""
    batches: list[list[int]] = []

    def write(jobs: list[_Job]) -> None:
        batches.append([j.n for j in jobs])
        for j in jobs:
            j.result = j.n

    first, second, later = _Job(1), _Job(2), _Job(3)

    async def main() -> None:
        commits = _commits(write, batch_max=10)
        commits.expect(["a", "b", "hanging"])
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(commits.write, first, "a")
                tg.start_soon(commits.write, second, "b")
                await anyio.wait_all_tasks_blocked()  # the batch waits for "hanging"
                assert batches == []
                scope.cancel()
        assert scope.cancelled_caught
        commits.settle("hanging")
        await commits.write(later)

    anyio.run(main)
    assert batches == [[1, 2], [3]]
    assert (first.result, first.error, second.result, second.error) == (1, None, 2, None)


def test_sqlite_poll_batches_of_two_processes_take_turns(tmp_path: Path) -> None:
    """A poll batch takes SQLite's write lock before it reads the feed rows: a second writer (a
    second `monitor poll`, the daemon) reads them after the first one's commit, never before it
    (which lost the first one's counters, applied an update twice and sent "source down" twice).
    The second batch must not get as far as reading while the first holds the lock."""
    from monitor.store import Store

    url = f"sqlite:///{tmp_path / 'monitor.sqlite3'}"
    first_store, second_store = Store(url), Store(url)
    first_store.create_schema()
    first_store.sync_feeds([("a", "https://example.org/a.xml")])
    second_read = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with second_store.poll_batch() as batch:
                tx = batch.poll("a")  # reads the feed's row
                second_read.set()
                tx.state.polls_total = (tx.state.polls_total or 0) + 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        with first_store.poll_batch() as batch:
            tx = batch.poll("a")
            tx.state.polls_total = (tx.state.polls_total or 0) + 1
            batch.session.flush()
            other = threading.Thread(target=second)
            other.start()
            # It must wait for the lock instead of reading the row as it was before this commit.
            assert not second_read.wait(1.0)
        other.join(30)
        assert errors == [] and second_read.is_set()
        state = first_store.feed_state("a")
        assert state is not None and state.polls_total == 2  # neither poll's count lost
    finally:
        first_store.close()
        second_store.close()
