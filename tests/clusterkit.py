"""Helpers for the cluster, scheduler and ops tests: throw-away PostgreSQL databases, daemon nodes as
real processes with JSON logs in files, and reading who polled which (feed, slot)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import wait_for

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


def _admin_connect() -> Any:
    import psycopg

    return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)


def postgres_available() -> str | None:
    """None when PostgreSQL answers on 127.0.0.1:5432, else why not."""
    try:
        with _admin_connect() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as postgres/test ({type(exc).__name__}: {exc})"
    return None


@contextlib.contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database (dropped afterwards); skips the calling test with
    the reason when none is reachable."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database("sm_cluster") as url:
        yield url


@dataclass
class Node:
    node_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def records(self) -> list[dict[str, Any]]:
        out = []
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue  # a line cut by SIGKILL
        return out

    def messages(self, message: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("message") == message]

    def polls(self) -> list[dict[str, Any]]:
        """Polls that fetched and committed, as logged ("polled feed" comes after the commit)."""
        return self.messages("polled feed")

    def started(self) -> bool:
        return bool(self.messages("daemon started"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def spawn_node(
    config_path: Path, node_id: str, log_dir: Path, env: dict[str, str] | None = None, suffix: str = ""
) -> Node:
    log_path = log_dir / f"{node_id}{suffix}.log"
    handle = open(log_path, "ab")  # noqa: SIM115 - a file, not a pipe: a full pipe blocks the daemon
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if "MONITOR_DATABASE_URL" not in (env or {}):
        full_env.pop("MONITOR_DATABASE_URL", None)  # the config file names the database
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "--config",
            str(config_path),
            "--log-format",
            "json",
            "run",
            "--node-id",
            node_id,
        ],
        stdout=subprocess.DEVNULL,
        stderr=handle,
        env=full_env,
        cwd=config_path.parent,
    )
    handle.close()
    return Node(node_id, proc, log_path)


def wait_started(nodes: list[Node], timeout: float = 60) -> None:
    def ready() -> bool:
        for node in nodes:
            if not node.alive():
                raise AssertionError(f"node {node.node_id} exited early:\n{node.tail()}")
        return all(node.started() for node in nodes)

    wait_for(ready, timeout=timeout, what="all nodes to start")


def slot_of(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["slot"])


def poll_times(nodes: list[Node]) -> dict[str, list[tuple[float, str]]]:
    """Per feed: (log time as epoch seconds, node) of every committed poll, in time order."""
    out: dict[str, list[tuple[float, str]]] = {}
    for node in nodes:
        for rec in node.polls():
            t = datetime.fromisoformat(rec["time"]).timestamp()
            out.setdefault(rec["feed"], []).append((t, node.node_id))
    for values in out.values():
        values.sort()
    return out


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    return wait_for(predicate, timeout=timeout, interval=0.1, what=what)


def now() -> float:
    return time.time()
