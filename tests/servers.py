"""Real servers on 127.0.0.1 for the tests: a feed server with ETag/Last-Modified/304 and a log
of requests. Handlers can be swapped per path to misbehave (hang, redirect, trickle, ...)."""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Resource:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    conditional: bool = True  # honour If-None-Match / If-Modified-Since
    last_modified: float = field(default_factory=time.time)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'


@dataclass
class RequestRecord:
    method: str
    path: str
    headers: dict[str, str]
    status: int
    client_port: int = 0  # one per TCP connection: tells kept-alive connections from new ones


Handler = Callable[[BaseHTTPRequestHandler], None]


class FeedServer:
    """``with FeedServer() as server: server.put('/a.xml', body); server.url('/a.xml')``"""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.handlers: dict[str, Handler] = {}
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                outer._handle(self)

            def do_POST(self) -> None:
                outer._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, path: str, body: bytes | str, **kwargs: Any) -> Resource:
        if isinstance(body, str):
            body = body.encode("utf-8")
        res = Resource(body=body, **kwargs)
        with self._lock:
            self.resources[path] = res
        return res

    def route(self, path: str, handler: Handler) -> None:
        with self._lock:
            self.handlers[path] = handler

    def requests_for(self, path: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _record(self, req: BaseHTTPRequestHandler, status: int) -> None:
        with self._lock:
            self.requests.append(
                RequestRecord(req.command, req.path, dict(req.headers.items()), status, req.client_address[1])
            )

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path
        with self._lock:
            handler = self.handlers.get(path)
            res = self.resources.get(path)
        if handler is not None:
            self._record(req, 0)
            handler(req)
            return
        if res is None:
            self._send(req, 404, b"not found", {"Content-Type": "text/plain"})
            return
        headers = {"Content-Type": res.content_type, **res.headers}
        if res.status == 200:
            headers["ETag"] = res.etag
            headers["Last-Modified"] = email.utils.formatdate(res.last_modified, usegmt=True)
            if res.conditional:
                inm = req.headers.get("If-None-Match")
                ims = req.headers.get("If-Modified-Since")
                fresh = False
                if inm is not None:
                    fresh = inm == res.etag
                elif ims is not None:
                    try:
                        fresh = email.utils.parsedate_to_datetime(ims).timestamp() >= int(res.last_modified)
                    except (TypeError, ValueError):
                        fresh = False
                if fresh:
                    self._send(req, 304, b"", {"ETag": res.etag})
                    return
        self._send(req, res.status, res.body, headers)

    def _send(self, req: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        self._record(req, status)
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        if status != 304:
            req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if status != 304 and req.command != "HEAD":
            req.wfile.write(body)
