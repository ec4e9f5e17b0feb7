"""Polls that bring nothing to parse (304, or the same body again) are written in batches
(``Monitor._write_not_modified`` -> ``Store.write_not_modified``, or on an SQLite file that existed
when the monitor opened, ``LiteStore.write_not_modified``): the same health as the normal poll
transaction, and the normal transaction whenever there is more to do than counting. The poll-level
tests run on both lanes (``lane``)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from monitor.config import Config
from monitor.store import Delivery, FeedState
from tests.feeds import FakeEntry, rss
from tests.misbehaving import monitor_config, running_monitor
from tests.servers import FeedServer

FEED = rss([FakeEntry("a1", "Gipfel in Budapest geplant", "Trump und Putin wollen sich treffen.")])
HOOKS = {"webhooks": [{"url": "http://127.0.0.1:9/ops", "name": "ops"}]}


def _state(store, name: str) -> FeedState:  # type: ignore[no-untyped-def]
    state = store.feed_state(name)
    assert state is not None
    return state


@pytest.fixture(params=["store", "lite"])
def lane(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def monitor_on(lane: str, config: Config) -> Iterator[tuple[Any, Any]]:
    """``running_monitor``; for the ``lite`` lane the database exists before the monitor opens
    (a first monitor made it and left), as it does for every ``monitor poll`` after the first."""
    if lane == "lite":
        with running_monitor(config):
            pass
    with running_monitor(config) as (monitor, portal):
        assert (monitor._lite is not None) == (lane == "lite")
        yield monitor, portal


def test_not_modified_polls_update_health_like_a_poll(tmp_path: Path, lane: str) -> None:
    with FeedServer() as server:
        for name in ("a", "b", "c"):
            server.put(f"/{name}.xml", FEED)
        server.put("/same.xml", FEED, conditional=False)  # ignores validators: same bytes again
        feeds = [{"name": n, "url": server.url(f"/{n}.xml")} for n in ("a", "b", "c", "same")]
        with monitor_on(lane, monitor_config(tmp_path, feeds)) as (monitor, portal):
            first = portal.call(monitor.poll)
            assert [r.status for r in first.reports] == ["ok"] * 4
            before = {n: _state(monitor.store, n) for n in ("a", "b", "c", "same")}
            second = portal.call(monitor.poll)
            assert [r.status for r in second.reports] == ["not_modified"] * 3 + ["unchanged"]
            assert all(r.http_status in (200, 304) and r.error is None for r in second.reports)
            for name, old in before.items():
                new = _state(monitor.store, name)
                assert new.polls_total == 2
                assert new.polls_not_modified == (1 if name != "same" else 0)
                assert new.last_status == (304 if name != "same" else 200)
                assert new.etag == old.etag and new.etag
                assert new.body_hash == old.body_hash
                assert new.last_polled_at is not None and old.last_polled_at is not None
                assert new.last_polled_at > old.last_polled_at
                assert new.last_success_at == new.last_polled_at
                assert new.last_polled_at.tzinfo is not None
                assert new.error_streak == 0 and new.failing_since is None
                assert new.latency_avg is not None and new.latency_avg > 0
                assert new.items_total == old.items_total


def test_a_row_changed_since_it_was_read_is_not_written(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.put("/a.xml", FEED)
        feeds = [{"name": "a", "url": server.url("/a.xml")}]
        with running_monitor(monitor_config(tmp_path, feeds)) as (monitor, portal):
            portal.call(monitor.poll)
            state = _state(monitor.store, "a")
            row = {c: getattr(state, c) for c in monitor.store.NOT_MODIFIED_COLUMNS}
            row.update(id=state.id, current_url=state.current_url, polls_total=99)
            stale = dict(row, expect_polls_total=state.polls_total + 1)
            assert monitor.store.write_not_modified([stale]) == {state.id}
            assert _state(monitor.store, "a").polls_total == state.polls_total
            moved = dict(row, expect_polls_total=state.polls_total, current_url="http://elsewhere/")
            assert monitor.store.write_not_modified([moved]) == {state.id}
            fresh = dict(row, expect_polls_total=state.polls_total)
            assert monitor.store.write_not_modified([fresh]) == set()
            assert _state(monitor.store, "a").polls_total == 99


def test_a_304_after_a_source_down_alert_still_raises_source_back(tmp_path: Path, lane: str) -> None:
    with FeedServer() as server:
        server.put("/a.xml", FEED)
        feeds = [{"name": "a", "url": server.url("/a.xml")}]
        with monitor_on(lane, monitor_config(tmp_path, feeds, alerts=HOOKS)) as (monitor, portal):
            portal.call(monitor.poll)
            with monitor.store.session() as session:
                row = session.scalars(select(FeedState)).one()
                row.down_alerted = True
                row.error_streak = 3
                row.failing_since = datetime(2026, 1, 1, tzinfo=UTC)
                session.add(row)
                session.commit()
            report = portal.call(monitor.poll).reports[0]
            assert (report.status, report.http_status) == ("not_modified", 304)
            with monitor.store.session() as session:
                kinds = [d.kind for d in session.scalars(select(Delivery))]
            assert kinds == ["source_back"]
            state = _state(monitor.store, "a")
            assert not state.down_alerted and state.error_streak == 0 and state.polls_not_modified == 1


def test_a_scheduled_304_commits_its_slot_once(tmp_path: Path, lane: str) -> None:
    with FeedServer() as server:
        server.put("/a.xml", FEED)
        feeds = [{"name": "a", "url": server.url("/a.xml")}]
        with monitor_on(lane, monitor_config(tmp_path, feeds)) as (monitor, portal):
            portal.call(monitor.poll)
            slot = datetime.now(UTC).replace(microsecond=0)  # a slot fires at its time, not later
            poll = functools.partial(monitor.poll_feed, "a", scheduled=True, slot=slot)
            assert portal.call(poll).status == "not_modified"
            assert _state(monitor.store, "a").last_slot == slot
            again = portal.call(poll)
            assert again.status == "skipped"
            assert _state(monitor.store, "a").polls_total == 2
