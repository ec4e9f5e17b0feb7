"""Feed health through the whole pipeline: redirects, 410, Retry-After and cache bounds, back-off and
recovery with one "source down" / "source back" alert each, bad content, data safety."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from monitor.config import Config
from monitor.health import HealthPolicy, backoff_delay
from monitor.pipeline import FeedPollReport, Monitor
from monitor.store import Delivery, FeedState, Item
from tests.conftest import Project
from tests.feeds import FakeEntry, rss
from tests.misbehaving import monitor_config, redirect, running_monitor, serve_bytes, status
from tests.servers import FeedServer

FEED = rss(
    [
        FakeEntry("a1", "Gipfel in Budapest geplant", "Trump und Putin wollen sich in Budapest treffen."),
        FakeEntry("a2", "Selenskyj in Washington", "Selenskyj bittet um Tomahawk-Marschflugkörper."),
    ]
)
HOOKS = {
    "webhooks": [
        {"url": "http://127.0.0.1:9/ops", "name": "ops"},
        {"url": "http://127.0.0.1:9/desk", "name": "desk"},
    ]
}


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def server(shared_server: FeedServer) -> FeedServer:
    with shared_server._lock:
        shared_server.requests.clear()
        shared_server.handlers.clear()
        shared_server.resources.clear()
    return shared_server


def config_for(tmp_path: Path, server: FeedServer, path: str = "/feed.xml", **sections: Any) -> Config:
    feeds = [{"name": "testfeed", "url": server.url(path), "interval": "5m"}]
    return monitor_config(tmp_path, feeds, **sections)


def poll(monitor: Monitor, portal: Any, scheduled: bool = False) -> FeedPollReport:
    return portal.call(functools.partial(monitor.poll_feed, "testfeed", scheduled=scheduled))


def state(monitor: Monitor) -> FeedState:
    result = monitor.store.feed_state("testfeed")
    assert result is not None
    return result


def outbox(monitor: Monitor) -> list[Delivery]:
    with monitor.store.session() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def item_ids(monitor: Monitor) -> set[str]:
    with monitor.store.session() as session:
        return set(session.scalars(select(Item.entry_id)))


# --- back-off, recovery and the source down/back alerts ------------------------------------------


def test_failing_feed_backs_off_then_recovers_with_one_alert_each_way(
    tmp_path: Path, server: FeedServer
) -> None:
    server.put("/feed.xml", FEED)
    config = config_for(tmp_path, server, fetch={"alert_after": "1ms", "max_backoff": "1h"}, alerts=HOOKS)
    with running_monitor(config) as (monitor, portal):
        assert poll(monitor, portal).status == "ok"
        server.route("/feed.xml", status(503, body=b"Wartungsarbeiten"))
        delays = []
        for expected_streak in (1, 2, 3, 4):
            before = datetime.now(UTC)
            report = poll(monitor, portal)
            assert report.status == "error" and report.error == "http: HTTP 503 Service Unavailable"
            s = state(monitor)
            assert s.error_streak == expected_streak and s.last_error_kind == "http"
            assert s.next_poll_after is not None
            delays.append(round((s.next_poll_after - before).total_seconds() / 60))
        assert delays == [5, 10, 20, 40]  # interval * 2^(streak-1) minutes, capped at 1h next
        poll(monitor, portal)
        assert round((state(monitor).next_poll_after - datetime.now(UTC)).total_seconds() / 60) == 60

        # While backing off, scheduled polls do not touch the server at all.
        requests_before = len(server.requests_for("/feed.xml"))
        skipped = poll(monitor, portal, scheduled=True)
        assert skipped.status == "skipped" and "not due before" in (skipped.error or "")
        assert len(server.requests_for("/feed.xml")) == requests_before

        down = [d for d in outbox(monitor) if d.kind == "source_down"]
        assert sorted(d.channel for d in down) == sorted(monitor.alert_channels)
        assert len(monitor.alert_channels) == 2
        payload = down[0].payload
        assert payload["feed"] == "testfeed" and payload["url"] == server.url("/feed.xml")
        assert payload["error"] == "http: HTTP 503 Service Unavailable"
        assert datetime.fromisoformat(payload["since"]) == state(monitor).failing_since
        assert all(d.feed_id == state(monitor).id for d in down)

        # The feed comes back: it is polled at its normal pace again and says so once.
        server.route("/feed.xml", serve_bytes(FEED.encode(), {"Content-Type": "application/rss+xml"}))
        assert poll(monitor, portal).status in ("ok", "unchanged")
        s = state(monitor)
        assert s.error_streak == 0 and s.failing_since is None and s.last_error is None
        assert s.next_poll_after is None and not s.down_alerted
        assert poll(monitor, portal).status in ("ok", "unchanged")
        rows = outbox(monitor)
        assert sorted((d.kind, d.channel) for d in rows) == sorted(
            [("source_down", c) for c in monitor.alert_channels]
            + [("source_back", c) for c in monitor.alert_channels]
        )
        # A new failure episode alerts again, with new idempotency keys.
        server.route("/feed.xml", status(500))
        poll(monitor, portal)
        poll(monitor, portal)
        keys = [d.idempotency_key for d in outbox(monitor)]
        assert len(keys) == len(set(keys)) == 3 * len(monitor.alert_channels)


def test_backoff_is_capped_and_honours_retry_after() -> None:
    policy = HealthPolicy(interval=30, max_backoff=3600, alert_after=60)
    assert [backoff_delay(n, policy) for n in (1, 2, 3, 7, 50)] == [60, 120, 240, 3600, 3600]
    assert backoff_delay(1, policy, retry_after=900) == 900
    assert backoff_delay(1, policy, retry_after=10**9) == 3600  # never disabled by a server's whim


def test_503_with_retry_after_delays_the_next_poll(tmp_path: Path, server: FeedServer) -> None:
    server.route("/feed.xml", status(503, {"Retry-After": "7200"}))
    config = config_for(tmp_path, server, fetch={"max_backoff": "6h"})
    with running_monitor(config) as (monitor, portal):
        before = datetime.now(UTC)
        assert poll(monitor, portal).status == "error"
        wait = state(monitor).next_poll_after - before
        assert timedelta(seconds=7200) <= wait < timedelta(seconds=7300)
        assert poll(monitor, portal, scheduled=True).status == "skipped"
        assert len(server.requests_for("/feed.xml")) == 1


def test_cache_control_and_ttl_are_lower_bounds_kept_across_304(tmp_path: Path, server: FeedServer) -> None:
    server.put("/feed.xml", rss([FakeEntry("1", "Titel", "Text")], ttl=60))  # minutes
    server.put("/cached.xml", FEED, headers={"Cache-Control": "max-age=1800"})
    config = monitor_config(
        tmp_path,
        [
            {"name": "testfeed", "url": server.url("/feed.xml"), "interval": "5m"},
            {"name": "cached", "url": server.url("/cached.xml"), "interval": "5m"},
        ],
    )
    with running_monitor(config) as (monitor, portal):
        for expected in ("ok", "not_modified"):
            before = datetime.now(UTC)
            assert poll(monitor, portal).status == expected
            wait = state(monitor).next_poll_after - before
            assert timedelta(minutes=60) <= wait < timedelta(minutes=61)
        portal.call(monitor.poll_feed, "cached")
        cached = monitor.store.feed_state("cached")
        assert cached is not None and cached.next_poll_after is not None
        assert cached.next_poll_after - datetime.now(UTC) > timedelta(minutes=29)


def test_bounds_shorter_than_the_interval_change_nothing(tmp_path: Path, server: FeedServer) -> None:
    server.put("/feed.xml", FEED, headers={"Cache-Control": "max-age=10"})
    config = config_for(tmp_path, server)
    with running_monitor(config) as (monitor, portal):
        poll(monitor, portal)
        s = state(monitor)
        assert s.next_poll_after is not None and s.next_poll_after - datetime.now(UTC) < timedelta(seconds=11)
        # The schedule (every 5 minutes) sets the pace; a short max-age never makes it faster.


# --- redirects and 410 ---------------------------------------------------------------------------


def test_301_then_200_updates_the_stored_url_and_302_does_not(
    tmp_path: Path, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.put("/new.xml", FEED)
    server.route("/feed.xml", redirect(301, "/new.xml"))
    config = config_for(tmp_path, server)
    with running_monitor(config) as (monitor, portal):
        assert poll(monitor, portal).status == "ok"
        assert state(monitor).current_url == server.url("/new.xml")
        assert state(monitor).url == server.url("/feed.xml")  # the configured URL is kept
        assert any("moved permanently" in r.getMessage() for r in caplog.records)
        poll(monitor, portal)
        assert len(server.requests_for("/feed.xml")) == 1  # the old URL is not asked again
        assert len(server.requests_for("/new.xml")) == 2

    server.route("/temp.xml", redirect(302, "/new.xml"))
    config = config_for(tmp_path / "t", server, path="/temp.xml")
    with running_monitor(config) as (monitor, portal):
        assert poll(monitor, portal).status == "ok"
        assert state(monitor).current_url == server.url("/temp.xml")


def test_410_disables_the_feed_and_tells_the_user_at_once(
    tmp_path: Path, server: FeedServer, project: Project
) -> None:
    server.route("/feed.xml", status(410))
    config = config_for(tmp_path, server, alerts=HOOKS)
    with running_monitor(config) as (monitor, portal):
        report = poll(monitor, portal)
        assert report.status == "error" and "410" in (report.error or "")
        s = state(monitor)
        assert s.disabled and "410 Gone" in (s.disabled_reason or "")
        down = [d for d in outbox(monitor) if d.kind == "source_down"]
        assert len(down) == 2 and down[0].payload["disabled"] is True
        again = poll(monitor, portal)
        assert again.status == "disabled"
        assert len(server.requests_for("/feed.xml")) == 1
    project.config_path = tmp_path / "feeds.yaml"
    rows = project.cli("feeds", "--json").json()
    assert rows[0]["status"] == "disabled" and "410 Gone" in rows[0]["disabled_reason"]


# --- bad content through the pipeline --------------------------------------------------------------


def test_html_instead_of_a_feed_names_the_feeds_it_announces(
    tmp_path: Path, server: FeedServer, project: Project
) -> None:
    page = b"""<!doctype html><html><head><link rel="alternate" type="application/rss+xml"
    href="/rss/index.xml"></head><body>Willkommen</body></html>"""
    server.route("/feed.xml", serve_bytes(page, {"Content-Type": "text/html"}))
    config = config_for(tmp_path, server)
    with running_monitor(config) as (monitor, portal):
        report = poll(monitor, portal)
        assert report.status == "error"
        assert report.error == (
            "not_a_feed: the response is not a feed; the page announces these feeds: "
            + server.url("/rss/index.xml")
        )
    project.config_path = tmp_path / "feeds.yaml"
    row = project.cli("feeds", "--json").json()[0]
    assert row["status"] == "failing" and row["last_error_kind"] == "not_a_feed"
    assert server.url("/rss/index.xml") in row["last_error"]
    table = project.cli("feeds")
    assert table.exit_code == 0 and "not_a_feed" in table.stdout and "testfeed" in table.stdout


def test_iso_8859_1_feed_without_charset_is_stored_correctly(tmp_path: Path, server: FeedServer) -> None:
    body = rss([FakeEntry("1", "Größere Maßnahmen für Bürger", "Übergang")]).replace(' encoding="UTF-8"', "")
    server.put("/feed.xml", body.encode("iso-8859-1"), content_type="application/rss+xml")
    config = config_for(tmp_path, server)
    with running_monitor(config) as (monitor, portal):
        assert poll(monitor, portal).new == 1
        with monitor.store.session() as session:
            assert session.scalars(select(Item.title)).one() == "Größere Maßnahmen für Bürger"


def test_feeds_json_reports_health_numbers(tmp_path: Path, server: FeedServer, project: Project) -> None:
    server.put("/feed.xml", FEED)
    config = config_for(tmp_path, server)
    with running_monitor(config) as (monitor, portal):
        poll(monitor, portal)
        poll(monitor, portal)  # 304
    project.config_path = tmp_path / "feeds.yaml"
    result = project.cli("feeds", "--json")
    assert result.exit_code == 0
    row = result.json()[0]
    assert row["status"] == "ok" and row["items"] == 2 and row["polls"] == 2
    assert row["not_modified_ratio"] == 0.5 and row["error_streak"] == 0
    assert row["items_per_day"] > 0 and row["latency_avg"] is not None
    assert row["last_success"].endswith("Z")


# --- data safety -----------------------------------------------------------------------------------


def test_crash_mid_poll_leaves_the_previous_state(
    tmp_path: Path, server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.put("/feed.xml", FEED)
    config = config_for(tmp_path, server)
    with running_monitor(config) as (monitor, portal):
        poll(monitor, portal)
        before = state(monitor)
        server.put("/feed.xml", rss([FakeEntry("a3", "Neu", "Neuer Text")]))

        def crash(*args: Any) -> None:
            raise RuntimeError("simulated crash after the items were written")

        monkeypatch.setattr(monitor, "_diff_batch", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            poll(monitor, portal)
        after = state(monitor)
        assert item_ids(monitor) == {"a1", "a2"}
        assert (after.etag, after.body_hash, after.polls_total, after.items_total) == (
            before.etag,
            before.body_hash,
            before.polls_total,
            before.items_total,
        )
        monkeypatch.undo()
        assert poll(monitor, portal).new == 1  # the next poll does the work again, once
        assert item_ids(monitor) == {"a1", "a2", "a3"}


def test_cli_reads_while_the_daemon_holds_the_write_lock(
    tmp_path: Path, server: FeedServer, project: Project
) -> None:
    server.put("/feed.xml", FEED)
    config = config_for(tmp_path, server)
    with running_monitor(config) as (monitor, portal):
        poll(monitor, portal)
        db = str(tmp_path / "monitor.sqlite3")
        assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        holding, done = threading.Event(), threading.Event()

        def writer() -> None:
            # The daemon mid-poll: a write transaction open and uncommitted.
            with monitor.store.poll_transaction("testfeed") as tx:
                tx.state.last_error = "uncommitted write"
                tx.session.flush()
                holding.set()
                done.wait(20)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            assert holding.wait(10)
            project.config_path = tmp_path / "feeds.yaml"
            result = project.cli("feeds", "--json")
            assert result.exit_code == 0, result.stderr
            row = result.json()[0]
            assert row["items"] == 2 and row["last_error"] is None  # the committed state
        finally:
            done.set()
            thread.join(10)


@pytest.fixture(scope="module")
def property_monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Monitor, Any, FeedServer]]:
    with FeedServer() as server:
        server.put("/feed.xml", FEED)
        config = config_for(tmp_path_factory.mktemp("prop"), server)
        with running_monitor(config) as (monitor, portal):
            assert poll(monitor, portal).new == 2
            yield monitor, portal, server


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.binary(max_size=2048),
    content_type=st.sampled_from(["application/rss+xml", "text/html", "application/octet-stream"]),
)
def test_arbitrary_bytes_never_lose_stored_items(
    property_monitor: tuple[Monitor, Any, FeedServer], body: bytes, content_type: str
) -> None:
    monitor, portal, server = property_monitor
    server.route("/feed.xml", serve_bytes(body, {"Content-Type": content_type}))
    report = poll(monitor, portal)
    assert report.status in ("ok", "error", "unchanged")
    assert {"a1", "a2"} <= item_ids(monitor)


def test_xml_attacks_through_the_whole_poll(tmp_path: Path, server: FeedServer) -> None:
    # Whatever parser the pipeline picks (fast path or feedparser), entities are never expanded.
    secret = tmp_path / "geheim.txt"
    secret.write_text("GEHEIMER-SCHLUESSEL-4711", encoding="utf-8")
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file://'
        + str(secret).encode()
        + b'">\n<!ENTITY a "'
        + b"A" * 50_000
        + b'">\n]>\n<rss version="2.0"><channel><title>T</title><item><guid>q1</guid><title>&xxe;'
        + b"&a;" * 50_000
        + b"</title></item></channel></rss>"
    )
    server.put("/feed.xml", body)
    config = config_for(tmp_path, server)
    with running_monitor(config) as (monitor, portal):
        report = poll(monitor, portal)
        assert report.new == 1 and report.elapsed < 10
        with monitor.store.session() as session:
            title = session.scalars(select(Item.title)).one()
        assert "GEHEIMER" not in title and "AAAAAAAAAA" not in title and len(title) < 200_000


def test_a_non_ascii_etag_does_not_break_later_polls(tmp_path: Path, server: FeedServer) -> None:
    # Some servers put UTF-8 into ETag / Last-Modified. Echoing it back in If-None-Match cannot be
    # encoded (HTTP headers are ASCII): the next poll must ask unconditionally, not crash.
    body = FEED.encode()

    def utf8_etag(req: Any) -> None:
        head = (
            b'HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nETag: "gr\xc3\xbc\xc3\x9fe"\r\n'
            b"Last-Modified: Mo, 20 Okt 2025 \xc3\xbc\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        req.close_connection = True
        req.wfile.write(head + body)

    server.route("/feed.xml", utf8_etag)
    config = config_for(tmp_path, server)
    with running_monitor(config) as (monitor, portal):
        first = poll(monitor, portal)
        assert first.status == "ok" and first.new == 2
        second = poll(monitor, portal)
        assert second.status in ("ok", "unchanged") and second.error is None, second.error
        assert second.new == 0 and item_ids(monitor) == {"a1", "a2"}
    conditional = [r for r in server.requests_for("/feed.xml") if "If-None-Match" in r.headers]
    assert conditional == []
