"""Operations endpoint of ``monitor run``: ``/healthz``, ``/readyz`` and Prometheus ``/metrics``.

A deliberately small HTTP/1.1 server on anyio (one request per connection, GET/HEAD only), bound
to 127.0.0.1 by default (config ``ops: {enabled, listen, port}``); it has no dependency on the web
dashboard, and ``OpsServer.asgi()`` offers the same endpoints as an ASGI app to mount elsewhere. Counters describe this node; gauges read from the database at scrape time describe the
whole cluster (items, developments, deliveries by status, queue depth, feed error streaks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskStatus
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.store import Store
from monitor.store.cluster import ops_snapshot, ping

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
POLLS = Counter(
    "monitor_polls", "Scheduled feed polls run by this node, by status.", ["status"], registry=REGISTRY
)
POLL_DURATION = Histogram(
    "monitor_poll_duration_seconds",
    "Duration of one scheduled feed poll (fetch, parse, match, diff, store).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
    registry=REGISTRY,
)
POLL_DELAY = Histogram(
    "monitor_poll_delay_seconds",
    "How late a scheduled poll started after its slot (grows when nodes are overloaded).",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
    registry=REGISTRY,
)
ITEMS_STORED = Counter("monitor_items_stored", "New feed items stored by this node.", registry=REGISTRY)
DEVELOPMENTS = Counter("monitor_developments", "Developments created by this node.", registry=REGISTRY)
SCHEDULER_RUNNING = Gauge(
    "monitor_scheduler_running", "1 while this node's scheduler is running.", registry=REGISTRY
)
NODE_INFO = Gauge("monitor_node_info", "This node's identity.", ["node"], registry=REGISTRY)

READY_DB_TIMEOUT = 5.0
MAX_REQUEST_BYTES = 8192


def observe_poll(
    status: str, elapsed: float, new: int = 0, developments: int = 0, delay: float | None = None
) -> None:
    POLLS.labels(status=status).inc()
    if delay is not None and delay >= 0:
        POLL_DELAY.observe(delay)
    if status not in ("skipped", "busy"):
        POLL_DURATION.observe(elapsed)
    if new:
        ITEMS_STORED.inc(new)
    if developments:
        DEVELOPMENTS.inc(developments)


class DatabaseCollector:
    """Cluster-wide gauges, read from the database when Prometheus scrapes."""

    def __init__(self, store: Store, feeds: Collection[str] | None = None) -> None:
        self.store = store
        # The configured feeds: a feed removed from the config keeps its row (its items point to
        # it) but leaves the per-feed gauges, or an alert on its error streak would never clear.
        self.feeds = None if feeds is None else frozenset(feeds)

    def describe(self) -> list[Any]:
        return []  # no describe-time query (registration must not touch the database)

    def collect(self) -> Iterator[Any]:
        try:
            snap = ops_snapshot(self.store)
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("metrics: database unavailable", extra={"error": str(exc)[:200]})
            up = GaugeMetricFamily("monitor_database_up", "1 when the database answered the scrape.")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("monitor_database_up", "1 when the database answered the scrape.")
        up.add_metric([], 1)
        yield up
        items = GaugeMetricFamily("monitor_database_items", "Feed items stored (all nodes).")
        items.add_metric([], snap["items"])
        yield items
        devs = GaugeMetricFamily("monitor_database_developments", "Developments stored (all nodes).")
        devs.add_metric([], snap["developments"])
        yield devs
        deliveries = GaugeMetricFamily(
            "monitor_deliveries", "Alert deliveries in the outbox, by status.", labels=["status"]
        )
        for status in sorted({"pending", "sending", "sent", "dead", *snap["deliveries"]}):
            deliveries.add_metric([status], snap["deliveries"].get(status, 0))
        yield deliveries
        queue = GaugeMetricFamily(
            "monitor_queue_depth",
            "Work waiting: deliveries pending, scheduler jobs queued or running.",
            labels=["queue"],
        )
        queue.add_metric(["deliveries"], snap["deliveries"].get("pending", 0))
        if snap["jobs_queued"] is not None:
            queue.add_metric(["jobs"], snap["jobs_queued"])
        yield queue
        streak = GaugeMetricFamily(
            "monitor_feed_error_streak", "Consecutive failed polls of each feed.", labels=["feed"]
        )
        disabled = GaugeMetricFamily("monitor_feed_disabled", "1 when a feed is disabled.", labels=["feed"])
        last_poll: datetime | None = None
        for name, errors, off, polled in snap["feeds"]:
            if self.feeds is not None and name not in self.feeds:
                continue
            streak.add_metric([name], errors)
            disabled.add_metric([name], int(off))
            if polled is not None and not off and (last_poll is None or polled > last_poll):
                last_poll = polled
        yield streak
        yield disabled
        if last_poll is not None:
            # Cluster-wide: a node may poll nothing for a while while the others take the jobs, but
            # no node polling any feed for several intervals means polling stopped (alert on it).
            age = GaugeMetricFamily(
                "monitor_last_poll_age_seconds",
                "Seconds since any node last polled any configured, enabled feed.",
            )
            age.add_metric([], max(0.0, (datetime.now(UTC) - last_poll).total_seconds()))
            yield age


@dataclass
class OpsState:
    store: Store
    scheduler_running: Callable[[], bool]
    node_id: str
    started: float = 0.0
    feeds: Collection[str] | None = None  # the configured feeds' names (None: every feed stored)


class OpsServer:
    """``await tg.start(server.serve)``; ``server.port`` is the bound port afterwards."""

    def __init__(self, state: OpsState, listen: str = "127.0.0.1", port: int = 9464) -> None:
        self.state = state
        self.listen = listen
        self.port = port
        self._collector = DatabaseCollector(state.store, state.feeds)
        self._active = False

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.listen, local_port=self.port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._activate()
        log.info("ops endpoint listening", extra={"listen": self.listen, "port": self.port})
        task_status.started(self.port)
        try:
            async with listener:
                await listener.serve(self._handle)
        finally:
            self._deactivate()

    def _activate(self) -> None:
        if not self._active:
            REGISTRY.register(self._collector)
            NODE_INFO.labels(node=self.state.node_id).set(1)
            self.state.started = time.time()
            self._active = True

    def _deactivate(self) -> None:
        if self._active:
            REGISTRY.unregister(self._collector)
            NODE_INFO.remove(self.state.node_id)
            self._active = False

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(10):
                    request = await _read_head(stream)
                    if request is None:
                        return
                    method, path = request
                    status, ctype, body = await self._route(method, path)
                    head = (
                        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
                    )
                    await stream.send(head.encode("ascii") + (b"" if method == "HEAD" else body))
            except (TimeoutError, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                return

    def asgi(self) -> Any:
        """The same endpoints as an ASGI app, to mount in another server (e.g. the web desk)."""
        self._activate()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            status, ctype, body = await self._route(scope["method"], scope["path"])
            await send(
                {
                    "type": "http.response.start",
                    "status": int(status.split()[0]),
                    "headers": [(b"content-type", ctype.encode()), (b"cache-control", b"no-store")],
                }
            )
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

        return app

    async def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", text, b"only GET and HEAD\n"
        path = path.split("?", 1)[0]
        if path == "/healthz":
            return "200 OK", text, b"ok\n"
        if path == "/readyz":
            problems = await self.readiness_problems()
            if problems:
                return "503 Service Unavailable", text, ("not ready: " + "; ".join(problems) + "\n").encode()
            return "200 OK", text, b"ready\n"
        if path == "/metrics":
            SCHEDULER_RUNNING.set(1 if self.state.scheduler_running() else 0)
            body = await anyio.to_thread.run_sync(generate_latest, REGISTRY)
            return "200 OK", CONTENT_TYPE_LATEST, body
        return "404 Not Found", text, b"not found: try /healthz, /readyz or /metrics\n"

    async def readiness_problems(self) -> list[str]:
        problems = []
        if not self.state.scheduler_running():
            problems.append("scheduler is not running")
        try:
            with anyio.fail_after(READY_DB_TIMEOUT):
                await anyio.to_thread.run_sync(ping, self.state.store, abandon_on_cancel=True)
        except TimeoutError:
            problems.append(f"database did not answer within {READY_DB_TIMEOUT:.0f}s")
        except Exception as exc:
            problems.append(f"database unreachable: {type(exc).__name__}")
        return problems


async def _read_head(stream: SocketStream) -> tuple[str, str] | None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_REQUEST_BYTES:
            return None
        try:
            data += await stream.receive(4096)
        except anyio.EndOfStream:
            break
    line = data.split(b"\n", 1)[0].decode("latin-1").strip()
    parts = line.split()
    if len(parts) < 2:
        return None
    return parts[0].upper(), parts[1]
