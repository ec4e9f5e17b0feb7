"""Handlers that make ``tests.servers.FeedServer`` misbehave like real web servers do, and helpers to
run a ``Monitor`` against it. Every handler that blocks waits on ``release`` (set on teardown), so
no server thread outlives its test."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from anyio.from_thread import BlockingPortal, start_blocking_portal

from monitor.config import Config, FetchConfig, parse_config

if TYPE_CHECKING:
    from monitor.pipeline import Monitor

Handler = Callable[[BaseHTTPRequestHandler], None]

# Small limits so every misbehaviour is detected in well under a second or two.
FAST_FETCH: dict[str, Any] = {
    # Generous where a test is not about timeouts (a loaded CI machine must not turn into "timeout").
    "timeout": "8s",
    "connect_timeout": "4s",
    "read_timeout": "4s",
    "max_bytes": 256 * 1024,
    "max_redirects": 5,
}


def fast_fetch_config(**overrides: Any) -> FetchConfig:
    return FetchConfig.model_validate({**FAST_FETCH, **overrides})


def _headers(req: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    req.send_response(status)
    for k, v in headers.items():
        req.send_header(k, v)
    req.end_headers()


def slow_loris(release: threading.Event, every: float = 0.05) -> Handler:
    """Headers, then one byte every ``every`` seconds, forever (each byte resets a read timeout)."""

    def handle(req: BaseHTTPRequestHandler) -> None:
        _headers(req, 200, {"Content-Type": "application/rss+xml", "Content-Length": "100000"})
        try:
            while not release.wait(every):
                req.wfile.write(b" ")
                req.wfile.flush()
        except OSError:
            pass

    return handle


def hang_after_headers(release: threading.Event) -> Handler:
    def handle(req: BaseHTTPRequestHandler) -> None:
        _headers(req, 200, {"Content-Type": "application/rss+xml", "Content-Length": "5000"})
        req.wfile.flush()
        release.wait(30)

    return handle


def redirect(status: int, location: str) -> Handler:
    def handle(req: BaseHTTPRequestHandler) -> None:
        _headers(req, status, {"Location": location, "Content-Length": "0"})

    return handle


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Handler:
    def handle(req: BaseHTTPRequestHandler) -> None:
        _headers(req, code, {"Content-Length": str(len(body)), **(headers or {})})
        req.wfile.write(body)

    return handle


class Streamer:
    """Streams ``total`` bytes without Content-Length (close-delimited); counts what it got out."""

    def __init__(self, total: int, chunk: int = 64 * 1024, declare_length: bool = False) -> None:
        self.total = total
        self.chunk = chunk
        self.declare_length = declare_length
        self.sent = 0

    def __call__(self, req: BaseHTTPRequestHandler) -> None:
        headers = {"Content-Type": "application/rss+xml", "Connection": "close"}
        if self.declare_length:
            headers["Content-Length"] = str(self.total)
        _headers(req, 200, headers)
        block = b"<!-- " + b"x" * (self.chunk - 9) + b" -->"
        req.close_connection = True
        try:
            while self.sent < self.total:
                req.wfile.write(block)
                self.sent += len(block)
        except OSError:
            pass


def gzip_bomb(decoded_size: int) -> bytes:
    """``decoded_size`` zero bytes, gzip-compressed (about 1000:1), built in chunks."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    out = [comp.compress(zeros) for _ in range(decoded_size >> 20)]
    out.append(comp.flush())
    return b"".join(out)


def serve_bytes(body: bytes, headers: dict[str, str]) -> Handler:
    def handle(req: BaseHTTPRequestHandler) -> None:
        _headers(req, 200, {"Content-Length": str(len(body)), **headers})
        with suppress(OSError):
            req.wfile.write(body)

    return handle


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body)


class ConcurrencyProbe:
    """Holds each request ``hold`` seconds and records the most requests in flight at once."""

    def __init__(self, body: bytes, hold: float = 0.15) -> None:
        self.body = body
        self.hold = hold
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, req: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.hold)  # the server's behaviour (a slow origin), not test synchronisation
        with self._lock:
            self.active -= 1
        _headers(req, 200, {"Content-Type": "application/rss+xml", "Content-Length": str(len(self.body))})
        req.wfile.write(self.body)


def monitor_config(tmp_path: Path, feeds: list[dict[str, Any]], **sections: Any) -> Config:
    data: dict[str, Any] = {
        "database": f"sqlite:///{tmp_path / 'monitor.sqlite3'}",
        "fetch": {**FAST_FETCH, **sections.pop("fetch", {})},
        "feeds": feeds,
        **sections,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "feeds.yaml"
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return parse_config(text, source=str(path), env={})


@contextmanager
def running_monitor(config: Config) -> Iterator[tuple[Monitor, BlockingPortal]]:
    """An open ``Monitor`` on an event loop in a background thread; call it via the portal."""
    from monitor.pipeline import Monitor

    with start_blocking_portal() as portal:
        monitor = Monitor(config)
        portal.call(monitor.open)
        try:
            yield monitor, portal
        finally:
            portal.call(monitor.close)
