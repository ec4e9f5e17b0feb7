"""Cluster mode: several `monitor run` processes on one PostgreSQL database (real processes, real
PostgreSQL on 127.0.0.1:5432, feeds on a loopback server). Polls are counted from the nodes' JSON
logs ("polled feed" is logged after the poll committed, with its slot) and the server's request log.

Durations on a 2-core machine: about 30 s and 45 s (see the README's deployment section).
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from monitor.scheduler import LEASE_DURATION, RECOVERY_BOUND
from tests.clusterkit import Node, pg_url, poll_times, slot_of, spawn_node, wait_started, wait_until
from tests.diff_texts import (
    CANCELLATION,
    CANCELLATION_COPY,
    CANCELLATION_COPY_TITLE,
    CANCELLATION_TITLE,
    RESTATEMENT,
    RESTATEMENT_TITLE,
    SANCTIONS,
    SANCTIONS_TITLE,
    STORY,
)
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer

__all__ = ["pg_url"]  # the fixture

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

INTERVAL = 2.0
T0 = datetime(2025, 10, 17, 8, 0, tzinfo=UTC)


def _entries(feed: int, extra: int = 0) -> list[FakeEntry]:
    """Three items per feed; every third feed restates the story. ``extra`` adds a later item with a
    new fact: the summit's cancellation (two wordings, so outlets agree) or sanctions."""
    story = feed % 3 == 0
    out = [
        FakeEntry(
            f"f{feed}-i{i}",
            f"Wetterbericht für Region {feed}, Ausgabe {i}",
            f"Sonnig und mild in Region {feed}; am Abend örtlich Nebel (Ausgabe {i}).",
            f"https://example.org/{feed}/{i}",
            T0,
        )
        for i in range(2 if story else 3)
    ]
    if story:
        out.append(
            FakeEntry(f"f{feed}-r", RESTATEMENT_TITLE, RESTATEMENT, f"https://example.org/{feed}/r", T0)
        )
    if extra:
        title, text_ = [
            (CANCELLATION_TITLE, CANCELLATION),
            (SANCTIONS_TITLE, SANCTIONS),
            (CANCELLATION_COPY_TITLE, CANCELLATION_COPY),
        ][feed % 3]
        out.append(
            FakeEntry(f"f{feed}-x", title, text_, f"https://example.org/{feed}/x", T0 + timedelta(hours=1))
        )
    return out


def _matching(feeds: int, extra: dict[int, int]) -> int:
    return sum((n % 3 == 0) + bool(extra.get(n)) for n in range(feeds))


def _cancelling(candidates: range) -> list[int]:
    """Feeds among ``candidates`` whose later item reports the cancellation (two wordings)."""
    return [n for n in candidates if n % 3 != 1]


def _sanctioning(candidates: range) -> list[int]:
    return [n for n in candidates if n % 3 == 1]


def _wait_new_item_committed(nodes: list[Node], feeds: list[int], after: float) -> None:
    """Until each feed has a committed poll after ``after`` that stored a new item."""

    def done() -> bool:
        seen = {
            rec["feed"]
            for node in nodes
            for rec in node.polls()
            if rec.get("new") and datetime.fromisoformat(rec["time"]).timestamp() > after
        }
        return all(f"feed{n}" in seen for n in feeds)

    wait_until(done, 60, f"the new items of feeds {feeds}")


class SlowFeeds:
    """Feeds that take a moment to answer, so polls are in flight when a node is killed."""

    def __init__(self, server: FeedServer, count: int, delay: float) -> None:
        self.server, self.delay = server, delay
        self.bodies: dict[str, bytes] = {}
        self.lock = threading.Lock()
        for n in range(count):
            self.set(n, 0)

    def path(self, n: int) -> str:
        return f"/feed{n}.xml"

    def set(self, n: int, extra: int) -> None:
        with self.lock:
            self.bodies[self.path(n)] = rss(_entries(n, extra), title=f"Feed {n}").encode()
        self.server.route(self.path(n), self._handle)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        time.sleep(self.delay)
        with self.lock:
            body = self.bodies[req.path]
        req.send_response(200)
        req.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


def _write_config(tmp_path: Path, db_url: str, server: FeedServer, feeds: int, hook: str) -> Path:
    config = {
        "database": db_url,
        "fetch": {"interval": f"{INTERVAL:g}s", "jitter": "0s"},
        "feeds": [{"name": f"feed{n}", "url": server.url(f"/feed{n}.xml")} for n in range(feeds)],
        "stories": [STORY],
        "alerts": {"webhooks": [{"url": hook, "name": "hook"}]},
        "ops": {"port": 0},
    }
    path = tmp_path / "feeds.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _hook_receiver(server: FeedServer) -> list[str]:
    """A webhook receiver on the same loopback server; returns the list of webhook-ids received."""
    received: list[str] = []

    def handle(req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        req.rfile.read(length)
        received.append(req.headers.get("webhook-id") or "")
        req.send_response(200)
        req.send_header("Content-Length", "0")
        req.end_headers()

    server.route("/hook", handle)
    return received


def _committed_slots(nodes: list[Node]) -> Counter[tuple[str, datetime]]:
    return Counter((rec["feed"], slot_of(rec)) for node in nodes for rec in node.polls())


def _superseded_slots(nodes: list[Node]) -> set[tuple[str, datetime]]:
    return {
        (rec["feed"], slot_of(rec))
        for node in nodes
        for rec in node.messages("poll skipped")
        if "already polled" in (rec.get("reason") or "")
    }


def _leased_schedules(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(text("SELECT id FROM schedules WHERE acquired_by IS NOT NULL")).scalars()
            )
    finally:
        engine.dispose()


def _db_checks(
    db_url: str, feeds: int, extra: dict[int, int], received: list[str], developments: list[list[int]]
) -> dict[str, Any]:
    """Every item served is stored once; every matching item matched once; exactly the expected
    developments (each a group of feeds reporting one new fact: none lost, none doubled), each with
    exactly one delivery to the webhook channel; every delivery marked sent reached the receiver."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            items = conn.execute(text("SELECT feed_id, entry_id FROM item")).all()
            names = dict(conn.execute(text("SELECT id, name FROM feed_state")).all())
            matches = conn.execute(text("SELECT story_id, item_id FROM story_match")).all()
            devs = conn.execute(text("SELECT id FROM development")).scalars().all()
            dev_feeds = conn.execute(
                text(
                    "SELECT s.development_id, f.name FROM development_source s"
                    " JOIN item i ON i.id = s.item_id JOIN feed_state f ON f.id = i.feed_id"
                )
            ).all()
            deliveries = conn.execute(
                text("SELECT development_id, channel, idempotency_key, status FROM delivery")
            ).all()
    finally:
        engine.dispose()
    stored = Counter((names[f], e) for f, e in items)
    expected = {(f"feed{n}", e.guid) for n in range(feeds) for e in _entries(n, extra.get(n, 0))}
    assert all(c == 1 for c in stored.values()), "an item stored twice"
    assert set(stored) == expected, f"missing {expected - set(stored)}, unexpected {set(stored) - expected}"
    assert len(matches) == len(set(matches)) == _matching(feeds, extra)
    groups: dict[int, set[str]] = {}
    for dev_id, feed_name in dev_feeds:
        groups.setdefault(dev_id, set()).add(feed_name)
    expected_groups = sorted(sorted(f"feed{n}" for n in group) for group in developments)
    assert sorted(sorted(g) for g in groups.values()) == expected_groups, "developments lost or doubled"
    assert len(devs) == len(developments)
    dev_deliveries = Counter(d for d, *_rest in deliveries if d is not None)
    assert all(dev_deliveries[d] == 1 for d in devs), "a development without exactly one delivery"
    sent = {key for *_r, key, status in deliveries if status == "sent"}
    assert sent <= set(received), "a delivery marked sent never reached the receiver"
    return {
        "items": len(stored),
        "matches": len(matches),
        "developments": len(devs),
        "deliveries_sent": len(sent),
        "webhooks_received": len(received),
    }


def test_three_nodes_start_together_on_empty_database_and_poll_every_slot_once(
    tmp_path: Path, pg_url: str
) -> None:
    feeds = 24
    with FeedServer() as server:
        slow = SlowFeeds(server, feeds, delay=0.02)
        received = _hook_receiver(server)
        config = _write_config(tmp_path, pg_url, server, feeds, server.url("/hook"))
        # All three at the same instant on an empty database (migrations + APScheduler's DDL race).
        nodes = [spawn_node(config, f"node{i}", tmp_path) for i in range(3)]
        try:
            wait_started(nodes, timeout=90)
            # Warm-up: the first polls parse, match and diff everything (seconds each on a loaded
            # 2-core machine), so fires are late and get coalesced. Steady state starts after.
            wait_until(
                lambda: (
                    len(poll_times(nodes)) == feeds and all(len(v) >= 2 for v in poll_times(nodes).values())
                ),
                timeout=60,
                what="two polls of every feed",
            )
            started = time.time()
            steady = datetime.fromtimestamp(started, UTC)
            # New facts mid-run: first the cancellation (four outlets), then the sanctions.
            later = range(0, feeds, 4)
            for n in _cancelling(later):
                slow.set(n, 1)
            _wait_new_item_committed(nodes, _cancelling(later), started)
            for n in _sanctioning(later):
                slow.set(n, 1)
            wait_until(
                lambda: all(sum(t > started for t, _ in v) >= 10 for v in poll_times(nodes).values()),
                timeout=90,
                what="10 more polls of every feed",
            )
            run_for = time.time() - started
        finally:
            codes = [node.stop() for node in nodes]
        assert codes == [0, 0, 0], "\n\n".join(n.tail() for n in nodes)
        for node in nodes:
            assert "Traceback" not in node.log_path.read_text(), node.tail(60)

        slots = _committed_slots(nodes)
        doubled = {k: c for k, c in slots.items() if c > 1}
        assert not doubled, f"slots polled more than once: {doubled}"
        # A second job for a committed slot (e.g. a schedule re-fired after a stopping node gave back
        # its lease) commits nothing. A job that runs so late that the feed's next slot already
        # committed is superseded (like APScheduler's coalescing; only on an overloaded machine).
        skipped = _superseded_slots(nodes)
        suppressed = skipped & set(slots)
        superseded = skipped - suppressed
        # Slots are exactly one interval apart. On an overloaded machine APScheduler coalesces a fire
        # whose schedule was processed more than an interval late: allowed, but rare and short.
        step = timedelta(seconds=INTERVAL)
        coalesced = 0
        for n in range(feeds):
            mine = sorted(
                {s for f, s in slots if f == f"feed{n}" and s >= steady}
                | {s for f, s in superseded if f == f"feed{n}" and s >= steady}
            )
            for a, b in itertools.pairwise(mine):
                assert (b - a) % step == timedelta(0), f"feed{n}: slot off the grid ({a} -> {b})"
                assert b - a <= 3 * step, f"feed{n}: no poll for {b - a}"
                coalesced += (b - a) // step - 1
        steady_slots = sum(1 for _f, s in slots if s >= steady)
        missed = coalesced + sum(1 for _f, s in superseded if s >= steady)
        assert missed <= 0.05 * steady_slots, f"{coalesced} slots coalesced, {len(superseded)} superseded"
        # Every fetch the server saw was a committed, logged poll: nothing fetched twice.
        for n in range(feeds):
            fetched = len(server.requests_for(f"/feed{n}.xml"))
            logged = sum(1 for f, _s in slots if f == f"feed{n}")
            assert fetched == logged, f"feed{n}: {fetched} requests, {logged} committed polls"
        per_node = Counter(rec["node"] for node in nodes for rec in node.polls())
        total = sum(per_node.values())
        assert set(per_node) == {"node0", "node1", "node2"}
        assert min(per_node.values()) >= total * 0.1, f"work not spread: {per_node}"
        counts = _db_checks(
            pg_url,
            feeds,
            {n: 1 for n in later},
            received,
            developments=[_cancelling(later), _sanctioning(later)],
        )
        assert _leased_schedules(pg_url) == [], "a stopped node kept schedule leases"
        assert counts["matches"] > 0
        assert len(received) == len(set(received)), "a webhook delivered twice"
        print(
            f"\nsteady state: {total} polls in {run_for:.1f}s, {len(superseded)} superseded, {coalesced} coalesced, "
            f"{len(suppressed)} duplicate jobs suppressed, "
            f"per node {dict(per_node)}, {counts}"
        )


def _lease_holder(db_url: str, candidates: list[Node], timeout: float) -> tuple[Node, list[str]]:
    """Freeze (SIGSTOP) a node while it holds schedule leases; returns it and the schedules it
    holds. A node caught just after it released them is thawed and we try again."""
    engine = create_engine(db_url)
    by_id = {n.node_id: n for n in candidates}
    deadline = time.monotonic() + timeout
    query = text(
        "SELECT acquired_by, id FROM schedules"
        " WHERE acquired_by IS NOT NULL AND acquired_until > now() AND id LIKE 'poll:%'"
    )
    try:
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                rows = conn.execute(query).all()
                conn.rollback()
                holders = {r[0] for r in rows if r[0] in by_id}
                if not holders:
                    continue
                node = by_id[sorted(holders)[0]]
                node.proc.send_signal(signal.SIGSTOP)
                held = [r[1] for r in conn.execute(query).all() if r[0] == node.node_id]
                conn.rollback()
                if held:
                    return node, held
                node.proc.send_signal(signal.SIGCONT)
    finally:
        engine.dispose()
    raise AssertionError("never caught a node holding schedule leases")


def _takeover(nodes: list[Node], killed_at: float, feeds: list[str]) -> float:
    """The longest time any of ``feeds`` went without a committed poll, counted from the kill
    (a stray job may run early while the schedule itself is still stuck on a dead node's lease)."""
    times = poll_times(nodes)
    worst = 0.0
    for feed in feeds:
        after = [t for t, _n in times.get(feed, []) if t > killed_at]
        assert after, f"{feed} was never polled again after the kill"
        series = [killed_at, *after]
        worst = max(worst, *(b - a for a, b in itertools.pairwise(series)))
    return worst


def test_sigkill_a_node_then_the_lease_holder_others_take_over_within_the_bound(
    tmp_path: Path, pg_url: str
) -> None:
    feeds = 20
    names = [f"feed{n}" for n in range(feeds)]
    bound = RECOVERY_BOUND + INTERVAL + 2.0  # + one interval to the next slot, + scheduling slack
    with FeedServer() as server:
        slow = SlowFeeds(server, feeds, delay=0.4)  # polls are in flight most of the time
        received = _hook_receiver(server)
        config = _write_config(tmp_path, pg_url, server, feeds, server.url("/hook"))
        nodes = [spawn_node(config, f"node{i}", tmp_path) for i in range(3)]
        try:
            wait_started(nodes, timeout=90)
            wait_until(
                lambda: (
                    len(poll_times(nodes)) == feeds and all(len(v) >= 3 for v in poll_times(nodes).values())
                ),
                timeout=60,
                what="3 polls of every feed",
            )
            # 1. SIGKILL a node mid-run (polls in flight: every answer takes 0.4 s).
            victim = nodes[2]
            in_flight_before = len(server.requests)
            victim.kill()
            killed_1 = time.time()
            first_fact = _cancelling(range(0, feeds, 5))
            for n in first_fact:
                slow.set(n, 1)
            wait_until(
                lambda: all(any(t > killed_1 + 1 for t, _ in poll_times(nodes).get(f, [])) for f in names),
                timeout=bound + 10,
                what="survivors to poll every feed after the first kill",
            )
            takeover_1 = _takeover(nodes, killed_1, names)
            _wait_new_item_committed(nodes, first_fact, killed_1)

            # 2. SIGKILL the node that holds schedule leases (the APScheduler 4.0.0a6 stall).
            holder, held = _lease_holder(pg_url, nodes[:2], timeout=30)
            holder.proc.send_signal(signal.SIGKILL)
            holder.proc.wait(timeout=10)
            killed_2 = time.time()
            survivor = next(n for n in nodes[:2] if n is not holder)
            held_feeds = [s.removeprefix("poll:") for s in held if s.startswith("poll:")]
            second_fact = _sanctioning(range(1, feeds, 5))
            for n in second_fact:
                slow.set(n, 1)
            settled = killed_2 + RECOVERY_BOUND + 2 * INTERVAL  # observe past the stale leases
            wait_until(
                lambda: all(any(t > settled for t, _ in poll_times([survivor]).get(f, [])) for f in names),
                timeout=bound + 20,
                what="the last node to poll every feed after the lease holder died",
            )
            takeover_2 = _takeover([survivor], killed_2, held_feeds or names)
            survivor_code = survivor.stop()
        finally:
            for node in nodes:
                if node.alive():
                    node.stop()
        assert survivor_code == 0, survivor.tail()
        assert takeover_1 <= bound, f"takeover after the first kill took {takeover_1:.1f}s"
        assert held_feeds, f"the frozen node held no poll schedules: {held}"
        assert takeover_2 <= bound, f"takeover after the lease holder died took {takeover_2:.1f}s"
        assert takeover_2 >= LEASE_DURATION - 3, "the held leases were not the ones blocking"

        slots = _committed_slots(nodes)
        doubled = {k: c for k, c in slots.items() if c > 1}
        assert not doubled, f"slots committed more than once: {doubled}"
        # Fetches beyond the committed polls: only those in flight on the two killed nodes.
        extra = sum(len(server.requests_for(f"/{f}.xml")) for f in names) - sum(slots.values())
        assert 0 <= extra <= 2 * 10, f"{extra} uncommitted fetches"
        extra_items = {n: 1 for n in first_fact + second_fact}
        counts = _db_checks(pg_url, feeds, extra_items, received, developments=[first_fact, second_fact])
        assert in_flight_before > 0
        print(
            f"\ntakeover after SIGKILL of a node: {takeover_1:.1f}s; after SIGKILL of the lease holder "
            f"({len(held_feeds)} schedules held): {takeover_2:.1f}s; bound {bound:.0f}s; {counts}"
        )


def test_a_node_id_in_use_is_refused(tmp_path: Path, pg_url: str) -> None:
    """Two live nodes with one id would take each other's leases: the second one must not start."""
    path = tmp_path / "feeds.yaml"
    path.write_text(
        yaml.safe_dump({"database": pg_url, "feeds": [], "ops": {"enabled": False}}), encoding="utf-8"
    )
    first = spawn_node(path, "zwilling", tmp_path)
    try:
        wait_started([first])
        second = spawn_node(path, "zwilling", tmp_path, suffix="-2")
        code = second.proc.wait(timeout=60)
        third = spawn_node(path, "drilling", tmp_path)
        wait_started([third])  # another id on the same database is fine
        assert first.alive()
    finally:
        codes = [first.stop(), third.stop() if "third" in locals() else 0]
    assert code == 2, second.tail()
    assert "node id 'zwilling' is in use" in second.log_path.read_text()
    assert codes == [0, 0]


def test_a_node_outlives_its_database_connections_being_dropped(tmp_path: Path, pg_url: str) -> None:
    """A PostgreSQL restart or failover drops every connection at once. APScheduler's psycopg
    broker and data store do not retry that, and the scheduler crashed: every node of the cluster
    exited at once (a daemon without a supervisor stopped polling for good). Now the node logs it,
    starts its scheduler again after a few seconds, and polls on."""
    import psycopg

    from tests.clusterkit import PG_ADMIN

    with FeedServer() as server:
        server.put("/eins.xml", rss([FakeEntry("e1", "Meldung eins", "Text.", None, T0)]))
        path = tmp_path / "feeds.yaml"
        config = {
            "database": pg_url,
            "fetch": {"interval": "1s", "jitter": "0s", "allow_private_addresses": True},
            "feeds": [{"name": "eins", "url": server.url("/eins.xml")}],
            "ops": {"enabled": False},
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        node = spawn_node(path, "ausdauer", tmp_path)
        try:
            wait_started([node])
            wait_until(lambda: node.polls(), 30, "a first poll")
            database = pg_url.rsplit("/", 1)[1]
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                dropped = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                    (database,),
                ).fetchone()
            assert dropped is not None and dropped[0] >= 2
            polls_before = len(node.polls())
            restarted = wait_until(
                lambda: node.messages("scheduler stopped: the database failed; starting it again"),
                30,
                "the node to notice and start its scheduler again",
            )
            assert restarted[0]["retry_in"] == 5.0 and "OperationalError" in restarted[0]["error"]
            wait_until(lambda: len(node.polls()) > polls_before + 2, 60, "polls after the restart")
            assert node.alive(), node.tail()
            # The first restart worked (it failed once more on the dropped feed-lock connection).
            assert len(node.messages("scheduler stopped: the database failed; starting it again")) == 1
        finally:
            code = node.stop()
    assert code == 0, node.tail()
    assert len(node.messages("daemon started")) >= 2
