"""The operations endpoint of `monitor run`: /healthz, /readyz, Prometheus /metrics."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
import yaml

from monitor.ops import OpsServer, OpsState
from monitor.store import Store
from tests.clusterkit import spawn_node, wait_started, wait_until
from tests.conftest import STORY
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer

T0 = datetime(2025, 10, 17, 8, 0, tzinfo=UTC)


def _metric(text: str, name: str, labels: str = "") -> float | None:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else None


@pytest.mark.slow
def test_run_serves_health_readiness_and_metrics(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.put(
            "/gut.xml",
            rss(
                [
                    FakeEntry(
                        "g1", "Selenski in Washington", "Es geht um Tomahawks.", "https://example.org/g1", T0
                    )
                ]
            ),
        )
        config = {
            "database": f"sqlite:///{tmp_path / 'monitor.sqlite3'}",
            "fetch": {"interval": "1s", "jitter": "0s"},
            "feeds": [
                {"name": "gut", "url": server.url("/gut.xml")},
                {"name": "kaputt", "url": server.url("/fehlt.xml")},  # 404: an error streak
            ],
            "stories": [STORY],
            "ops": {"listen": "127.0.0.1", "port": 0},
        }
        path = tmp_path / "feeds.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        node = spawn_node(path, "ops-node", tmp_path)
        try:
            wait_started([node])
            listening = wait_until(lambda: node.messages("ops endpoint listening"), 20, "the ops endpoint")
            assert listening[0]["listen"] == "127.0.0.1"
            base = f"http://127.0.0.1:{listening[0]['port']}"

            health = httpx.get(base + "/healthz", timeout=5)
            assert (health.status_code, health.text) == (200, "ok\n")

            def scraped() -> str | None:
                text = httpx.get(base + "/metrics", timeout=10).text
                ok = _metric(text, "monitor_polls_total", 'status="ok"') or 0
                streak = _metric(text, "monitor_feed_error_streak", 'feed="kaputt"') or 0
                return text if ok >= 1 and streak >= 1 else None

            metrics = wait_until(scraped, 30, "a successful poll and a failing feed in /metrics")
            ready = httpx.get(base + "/readyz", timeout=10)
            missing = httpx.get(base + "/nichts", timeout=5)
            post = httpx.post(base + "/metrics", timeout=5)
        finally:
            code = node.stop()
    assert code == 0, node.tail()
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert missing.status_code == 404
    assert post.status_code == 405
    assert _metric(metrics, "monitor_poll_duration_seconds_count") >= 1
    assert _metric(metrics, "monitor_poll_delay_seconds_count") >= 1
    assert _metric(metrics, "monitor_items_stored_total") == 1  # one new item, stored once
    assert _metric(metrics, "monitor_database_items") == 1
    assert _metric(metrics, "monitor_database_developments") is not None
    assert _metric(metrics, "monitor_deliveries", 'status="pending"') == 0
    assert _metric(metrics, "monitor_queue_depth", 'queue="deliveries"') == 0
    assert _metric(metrics, "monitor_queue_depth", 'queue="jobs"') is not None
    assert _metric(metrics, "monitor_scheduler_running") == 1
    assert _metric(metrics, "monitor_node_info", 'node="ops-node"') == 1
    assert _metric(metrics, "monitor_feed_error_streak", 'feed="gut"') == 0
    assert _metric(metrics, "monitor_database_up") == 1
    assert 0 <= _metric(metrics, "monitor_last_poll_age_seconds") < 30


def test_readyz_is_503_when_the_scheduler_stopped_and_the_database_is_unreachable() -> None:
    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    server = OpsServer(OpsState(store, lambda: False, "test-node"), listen="127.0.0.1", port=0)

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with anyio.create_task_group() as tg:
            port = await tg.start(server.serve)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
                result = (
                    await client.get("/readyz"),
                    await client.get("/healthz"),
                    await client.get("/metrics"),
                )
            tg.cancel_scope.cancel()
        return result

    try:
        ready, health, metrics = anyio.run(main)
    finally:
        store.close()
    assert ready.status_code == 503
    assert "scheduler is not running" in ready.text
    assert "database unreachable" in ready.text
    assert health.status_code == 200  # alive, just not ready
    assert metrics.status_code == 200  # a scrape never fails because the database is down
    assert _metric(metrics.text, "monitor_database_up") == 0
    assert _metric(metrics.text, "monitor_scheduler_running") == 0


def test_the_endpoints_mount_as_an_asgi_app(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store.create_schema()
    server = OpsServer(OpsState(store, lambda: True, "asgi-node"))
    app = server.asgi()

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops") as client:
            return await client.get("/readyz"), await client.get("/metrics"), await client.get("/x")

    try:
        ready, metrics, missing = anyio.run(main)
    finally:
        server._deactivate()
        store.close()
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert _metric(metrics.text, "monitor_database_up") == 1
    assert missing.status_code == 404


_ARENA_PROBE = """
import ctypes, sys, threading
from monitor.memory import limit_malloc_arenas
if sys.argv[1] == "limit":
    assert limit_malloc_arenas()
barrier = threading.Barrier(8)
kept = []
def work():
    barrier.wait()  # all eight allocate at once, each in its own thread
    kept.append([bytearray(4000) for _ in range(200)])
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()  # glibc: one "Arena N:" block per arena, on stderr
"""


def test_the_daemon_caps_malloc_arenas() -> None:
    """Threads get malloc arenas of their own (memory freed in one is not reused by another): a
    daemon's RSS crept up round after round. ``monitor run`` caps them at two."""
    import ctypes
    import os
    import subprocess
    import sys

    if not hasattr(ctypes.CDLL(None), "malloc_stats"):
        pytest.skip("not glibc: no malloc arenas to cap")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}

    def arenas(mode: str) -> int:
        probe = subprocess.run(
            [sys.executable, "-c", _ARENA_PROBE, mode], env=env, capture_output=True, text=True, check=True
        )
        return sum(line.startswith("Arena ") for line in probe.stderr.splitlines())

    assert arenas("default") > 2  # what the cap is for
    assert 1 <= arenas("limit") <= 2


def test_a_feed_removed_from_the_config_leaves_the_per_feed_gauges(tmp_path: Path) -> None:
    """Its row stays (its items point to it), but an alert on its error streak must clear."""
    from sqlalchemy import update

    from monitor.ops import DatabaseCollector
    from monitor.store.models import FeedState

    store = Store(f"sqlite:///{tmp_path / 'monitor.sqlite3'}")
    try:
        store.create_schema()
        store.sync_feeds([("gut", "https://example.org/gut.xml"), ("kaputt", "https://example.org/k.xml")])
        with store.session() as session:
            session.execute(update(FeedState).where(FeedState.name == "kaputt").values(error_streak=3))
            session.commit()

        def last_poll_age(feeds: list[str] | None) -> float | None:
            family = [
                f
                for f in DatabaseCollector(store, feeds).collect()
                if f.name == "monitor_last_poll_age_seconds"
            ]
            return family[0].samples[0].value if family else None

        assert last_poll_age(None) is None  # nothing polled yet: no age to report
        now = datetime.now(UTC)
        with store.session() as session:
            for name, ago in (("gut", 600), ("kaputt", 5)):
                session.execute(
                    update(FeedState)
                    .where(FeedState.name == name)
                    .values(last_polled_at=now - timedelta(seconds=ago))
                )
            session.commit()
        assert 5 <= (last_poll_age(None) or 0) < 60  # the newest poll of any feed
        assert 600 <= (last_poll_age(["gut"]) or 0) < 660  # of the configured feeds only

        def streaks(feeds: list[str] | None) -> dict[str, float]:
            family = next(
                f for f in DatabaseCollector(store, feeds).collect() if f.name == "monitor_feed_error_streak"
            )
            return {sample.labels["feed"]: sample.value for sample in family.samples}

        assert streaks(None) == {"gut": 0, "kaputt": 3}
        assert streaks(["gut"]) == {"gut": 0}  # "kaputt" was removed from the config
    finally:
        store.close()
