"""Real receivers for the alert tests: an SMTP server (aiosmtpd, optional STARTTLS and AUTH) and a
webhook receiver that verifies Standard Webhooks signatures with the ``standardwebhooks`` package
and can be told to fail. Plus a way to write developments through the store API."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from standardwebhooks.webhooks import Webhook

from monitor.store import DevelopmentRecord, SourceRecord, Store

SECRET = "whsec_" + base64.b64encode(b"story-monitor-test-secret-0123456789").decode()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll a condition with a bounded timeout (no sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- SMTP ------------------------------------------------------------------------------------


class _Collector:
    def __init__(self, outer: SMTPReceiver) -> None:
        self.outer = outer

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.outer.lock:
            plan = self.outer.refuse.get(address)
            answer = plan.pop(0) if plan else None
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        with self.outer.lock:
            self.outer.messages.append(msg)  # type: ignore[arg-type]
            self.outer.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), session.authenticated))
        return "250 OK"


class SMTPReceiver:
    """``with SMTPReceiver() as smtp: ... smtp.messages``; STARTTLS with ``tls_context``; AUTH with
    ``credentials=(user, password)``. ``stop()`` / ``start()`` take it down and up on one port."""

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.tls_context = tls_context
        self.credentials = credentials
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str], bool]] = []
        # Per recipient, answers to its next RCPT commands (e.g. ["450 4.2.1 Mailbox busy"]); then 250.
        self.refuse: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def _authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.credentials is not None
            and auth_data.login.decode() == self.credentials[0]
            and auth_data.password.decode() == self.credentials[1]
        )
        return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 235 or 535

    def start(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
            kwargs["require_starttls"] = True
        if self.credentials is not None:
            kwargs["authenticator"] = self._authenticator
            kwargs["auth_require_tls"] = self.tls_context is not None
        self._controller = Controller(
            _Collector(self), hostname="127.0.0.1", port=self.port, ready_timeout=10, **kwargs
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SMTPReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- webhooks --------------------------------------------------------------------------------


@dataclass
class Received:
    msg_id: str
    timestamp: int
    body: bytes
    headers: dict[str, str]
    status: int  # what the receiver answered
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP receiver on 127.0.0.1 that verifies every request's signature with the
    ``standardwebhooks`` package (401 when it does not verify), answers from ``plan`` first (e.g.
    ``[500, 500, (429, {"Retry-After": "1"})]``) and 204 after, and deduplicates by webhook-id."""

    def __init__(self, secret: str | None = SECRET) -> None:
        self.secret = secret
        # a status, (status, headers) or (status, headers, seconds to wait before answering)
        self.plan: list[int | tuple[int, dict[str, str]] | tuple[int, dict[str, str], float]] = []
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra = outer._answer(body, headers)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _answer(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
            except Exception:
                status, extra = 401, {}
                self._record(body, headers, status)
                return status, extra
        with self.lock:
            step = self.plan.pop(0) if self.plan else 204
        status, extra, slow = (
            (step, {}, 0.0) if isinstance(step, int) else (*step[:2], (step[2:] or (0.0,))[0])
        )
        self._record(body, headers, status)
        if slow:
            time.sleep(slow)  # a slow receiver: it takes this long to answer
        return status, extra

    def _record(self, body: bytes, headers: dict[str, str], status: int) -> None:
        with self.lock:
            self.requests.append(
                Received(
                    headers.get("webhook-id", ""),
                    int(headers.get("webhook-timestamp", "0") or 0),
                    body,
                    headers,
                    status,
                )
            )

    @property
    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def unique_accepted(self) -> dict[str, Received]:
        """What a receiver that deduplicates by webhook-id keeps."""
        out: dict[str, Received] = {}
        for r in self.accepted:
            out.setdefault(r.msg_id, r)
        return out

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- developments ----------------------------------------------------------------------------


def add_developments(
    store: Store,
    channels: list[str],
    titles: list[str],
    *,
    story: str = "budapest-summit",
    feed: str = "Testquelle",
    feed_url: str = "http://127.0.0.1:9/feed.xml",
    scores: list[float] | None = None,
    novel: list[list[str]] | None = None,
    sources: bool = True,
) -> list[int]:
    """Write developments (each with one source item) through the store API, as the diff stage
    does: one outbox delivery per channel in the same transaction. Returns development ids."""
    from monitor.parse import Entry

    store.create_schema()
    store.sync_feeds([(feed, feed_url)])
    ids = []
    now = datetime.now(UTC)
    for i, title in enumerate(titles):
        with store.poll_transaction(feed) as tx:
            source_records = []
            if sources:
                entry = _entry(Entry, f"{title}-{i}-{time.monotonic_ns()}", title, now)
                changed = tx.upsert_entries([entry])
                source_records = [SourceRecord(c.item_id, [f"{title}."]) for c in changed]
            record = DevelopmentRecord(
                story_id=story,
                key=f"k{abs(hash((title, i, time.monotonic_ns()))) % 10**12:012d}",
                title=title,
                score=(scores[i] if scores else 0.9),
                novel=(novel[i] if novel else [f"{title}."]),
                terms=[],
                sources=source_records,
                first_seen=now,
            )
            dev_id, created = tx.add_development(record, channels)
            assert created
            ids.append(dev_id)
    return ids


def _entry(entry_cls: Any, entry_id: str, title: str, now: datetime) -> Any:
    """An Entry built from its dataclass fields (robust to fields added by other work)."""
    import dataclasses
    import hashlib

    values: dict[str, Any] = {
        "entry_id": entry_id,
        "url": f"https://example.org/artikel/{hashlib.sha1(entry_id.encode()).hexdigest()[:8]}",
        "title": title,
        "summary": f"{title}.",
        "content": f"{title}.",
        "published": now,
        "published_from_feed": True,
        "content_hash": hashlib.sha1(entry_id.encode()).hexdigest(),
    }
    kwargs = {}
    for f in dataclasses.fields(entry_cls):
        if f.name in values:
            kwargs[f.name] = values[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            kwargs[f.name] = "" if f.type in (str, "str") else None
    return entry_cls(**kwargs)


def env_without_crash_hook() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MONITOR_TEST_CRASH_AT"}


def read_schema(root: Path) -> dict[str, Any]:
    return json.loads((root / "docs" / "webhook-payload.schema.json").read_text(encoding="utf-8"))
