"""The daemon: `monitor run` polls on schedule, stops cleanly on SIGTERM, resumes after restart."""

from __future__ import annotations

import signal
import sqlite3
from datetime import UTC, datetime

from tests.conftest import STORY, Project
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer
from tests.test_poll_failures import refuse_items_of
from tests.waiting import wait_for

T0 = datetime(2025, 10, 17, 8, 0, tzinfo=UTC)


def _config(server: FeedServer) -> dict:
    return {
        "fetch": {"interval": "1s", "jitter": "0s"},
        "feeds": [
            {"name": "eins", "url": server.url("/eins.xml")},
            {"name": "zwei", "url": server.url("/zwei.xml")},
        ],
        "stories": [STORY],
    }


def _stop(proc) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_daemon_polls_repeatedly_stops_on_sigterm_and_resumes(
    project: Project, feed_server: FeedServer
) -> None:
    feed_server.put(
        "/eins.xml",
        rss(
            [FakeEntry("e1", "Selenski in Washington", "Es geht um Tomahawks.", "https://example.org/e1", T0)]
        ),
    )
    feed_server.put(
        "/zwei.xml", rss([FakeEntry("z1", "Wetterbericht", "Sonnig und mild.", "https://example.org/z1", T0)])
    )
    project.write(_config(feed_server))

    proc = project.spawn("run")
    try:
        wait_for(
            lambda: (
                len(feed_server.requests_for("/eins.xml")) >= 3
                and len(feed_server.requests_for("/zwei.xml")) >= 3
            ),
            timeout=30,
            what="three polls of each feed",
        )
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert "daemon stopped" in err
    # Conditional requests after the first poll.
    assert all(r.status == 304 for r in feed_server.requests_for("/eins.xml")[1:])

    # A new entry appears while the daemon is down; the restarted daemon stores only that one.
    feed_server.put(
        "/eins.xml",
        rss(
            [
                FakeEntry(
                    "e2",
                    "Selenskyj trifft Trump",
                    "Das Gespräch dauerte zwei Stunden.",
                    "https://example.org/e2",
                    T0,
                ),
                FakeEntry(
                    "e1", "Selenski in Washington", "Es geht um Tomahawks.", "https://example.org/e1", T0
                ),
            ]
        ),
    )
    before = len(feed_server.requests_for("/eins.xml"))
    proc = project.spawn("run")
    try:
        wait_for(
            lambda: len(feed_server.requests_for("/eins.xml")) >= before + 2,
            timeout=30,
            what="polls after restart",
        )
    finally:
        code, err = _stop(proc)
    assert code == 0, err

    items = project.cli("items", "--json").json()
    assert sorted(i["title"] for i in items) == ["Selenski in Washington", "Selenskyj trifft Trump"]
    feeds = {f["name"]: f for f in project.cli("feeds", "--json").json()}
    assert feeds["eins"]["items"] == 2 and feeds["zwei"]["items"] == 1

    with sqlite3.connect(project.db_path) as db:
        schedules = sorted(r[0] for r in db.execute("SELECT id FROM schedules"))
        item_rows = db.execute("SELECT COUNT(*) FROM item").fetchone()[0]
    assert schedules == ["poll:eins", "poll:zwei"]
    assert item_rows == 3


def test_removed_and_changed_feeds_are_reconciled_on_start(project: Project, feed_server: FeedServer) -> None:
    feed_server.put("/eins.xml", rss([]))
    feed_server.put("/zwei.xml", rss([]))
    project.write(_config(feed_server))
    proc = project.spawn("run")
    try:
        wait_for(lambda: feed_server.requests_for("/zwei.xml"), timeout=30, what="first poll")
    finally:
        assert _stop(proc)[0] == 0

    config = _config(feed_server)
    config["feeds"] = [{"name": "eins", "url": feed_server.url("/eins.xml"), "interval": "2s"}]
    project.write(config)
    proc = project.spawn("run")
    try:
        wait_for(
            lambda: len(feed_server.requests_for("/eins.xml")) >= 3,
            timeout=30,
            what="polls of the remaining feed",
        )
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert "replaced=1" in err and "removed=1" in err
    with sqlite3.connect(project.db_path) as db:
        assert [r[0] for r in db.execute("SELECT id FROM schedules")] == ["poll:eins"]


def test_the_daemon_records_one_feeds_crashed_poll_and_polls_the_others(
    project: Project, feed_server: FeedServer
) -> None:
    """A poll that raises for one feed (here: the database refuses its items, as a storage bug for
    one feed's data would) is that feed's error in `monitor feeds`, as after `monitor poll`; the
    other feeds go on (its recovery once the items are taken: tests/test_poll_failures.py)."""
    for name in ("eins", "zwei"):
        feed_server.put(f"/{name}.xml", rss([]))
    project.write(_config(feed_server))
    assert project.cli("poll").exit_code == 0
    refuse_items_of(project.db_path, "zwei")
    for name in ("eins", "zwei"):
        feed_server.put(
            f"/{name}.xml", rss([FakeEntry(f"{name}-1", f"Meldung aus {name}", "Sonnig.", None, T0)])
        )

    def feeds() -> dict[str, dict]:
        return {f["name"]: f for f in project.cli("feeds", "--json").json()}

    proc = project.spawn("run")
    try:
        wait_for(
            lambda: feeds()["zwei"]["last_error_kind"] == "internal" and feeds()["eins"]["items"] == 1,
            timeout=30,
            what="the crashed poll recorded and the other feed stored",
        )
        assert "items of zwei refused" in feeds()["zwei"]["last_error"]
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert "poll of a feed failed" in err


def test_a_changed_interval_survives_the_node_that_held_the_schedule(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A node holding a schedule's lease when another node (or this one, restarted) changes its
    interval writes its old trigger back on release if the schedule was replaced in place; and a
    schedule whose trigger disagrees with its metadata was kept at every later start. Now the
    schedule is removed and added anew (the holder's release matches no row), and the trigger
    itself is compared."""
    from datetime import timedelta

    import anyio
    from apscheduler import AsyncScheduler
    from apscheduler._structures import ScheduleResult
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from apscheduler.triggers.interval import IntervalTrigger
    from sqlalchemy import text

    from monitor.config import parse_config
    from monitor.scheduler import (
        POLL_TASK_ID,
        _trigger_interval,
        make_event_broker,
        make_scheduler_engine,
        poll_feed_job,
        reconcile_schedules,
    )

    url = f"sqlite:///{tmp_path / 'monitor.sqlite3'}"

    def config(interval: str):  # type: ignore[no-untyped-def]
        return parse_config(
            f"database: '{url}'\nfetch: {{interval: {interval}, jitter: 0s}}\n"
            "feeds:\n  - {name: eins, url: 'https://example.org/eins.xml'}\n"
        )

    async def main() -> tuple[list[dict[str, int]], list[float | None]]:
        engine = make_scheduler_engine(url)
        store = SQLAlchemyDataStore(engine)
        counts, intervals = [], []
        try:
            async with AsyncScheduler(store, make_event_broker(url, engine), identity="n2") as scheduler:
                await scheduler.configure_task(POLL_TASK_ID, func=poll_feed_job, max_running_jobs=None)

                async def stored() -> float | None:
                    return _trigger_interval((await scheduler.get_schedule("poll:eins")).trigger)

                counts.append(await reconcile_schedules(scheduler, config("1s")))
                intervals.append(await stored())
                # node n1 holds the schedule's lease while n2 rolls out 30 s
                async with engine.begin() as conn:
                    await conn.execute(
                        text("UPDATE schedules SET acquired_by = 'n1', acquired_until = :t"),
                        {"t": datetime.now(UTC) + timedelta(seconds=15)},
                    )
                counts.append(await reconcile_schedules(scheduler, config("30s")))
                now = datetime.now(UTC)
                old = ScheduleResult(
                    schedule_id="poll:eins",
                    task_id=POLL_TASK_ID,
                    trigger=IntervalTrigger(seconds=1),
                    last_fire_time=now,
                    next_fire_time=now,
                )
                await store.release_schedules("n1", [old])  # n1 gives the schedule back
                intervals.append(await stored())
                counts.append(await reconcile_schedules(scheduler, config("30s")))
                # a schedule left with a stale trigger under the new metadata is not kept
                async with engine.begin() as conn:
                    await conn.execute(
                        text("UPDATE schedules SET trigger = :t"),
                        {"t": store.serializer.serialize(IntervalTrigger(seconds=1))},
                    )
                counts.append(await reconcile_schedules(scheduler, config("30s")))
                intervals.append(await stored())
        finally:
            await engine.dispose()
        return counts, intervals

    counts, intervals = anyio.run(main)
    assert [(c["added"], c["replaced"], c["kept"]) for c in counts] == [
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
        (0, 1, 0),
    ]
    assert intervals == [1.0, 30.0, 30.0]
