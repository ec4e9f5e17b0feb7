"""The SQLite fast lane: what a poll in which nothing changed needs from the database (the feeds'
rows, and their health counters and validators after a 304) through the standard library's
``sqlite3``, without SQLAlchemy and SQLModel.

Why: importing SQLAlchemy, SQLModel and the tables, checking the migrations and syncing the feeds
through the ORM was ~0.25 s of every ``monitor poll`` start, a third of a poll in which 500 feeds
answer 304. With this lane such a poll never loads them; the first feed that brings something new
(or fails) loads the full ``Store`` and takes the normal path. ``Monitor`` uses the lane only for a
plain SQLite file whose schema is at the migrations' head (read from the scripts' text, as the
start-up check does: ``revisions.head_from_scripts``) and whose feeds match the config (otherwise
the full store migrates and syncs as before); PostgreSQL always takes the full store.

This module and ``monitor.store.store`` are the places with SQL; the statements here read and
write exactly the columns and formats SQLAlchemy's SQLite dialect does (tests compare both ways).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from monitor.store.revisions import head_from_scripts
from monitor.store.sqlite_settings import SQLITE_BUSY_TIMEOUT_MS, SQLITE_PRAGMAS

# feed_state's columns (FeedState.model_fields; a test keeps the two equal).
FEED_STATE_COLUMNS = (
    "id",
    "name",
    "url",
    "current_url",
    "etag",
    "last_modified",
    "body_hash",
    "last_polled_at",
    "last_success_at",
    "last_status",
    "last_error_kind",
    "last_error",
    "error_streak",
    "failing_since",
    "next_poll_after",
    "disabled",
    "disabled_reason",
    "down_alerted",
    "feed_ttl",
    "polls_total",
    "polls_not_modified",
    "last_slot",
    "latency_avg",
    "items_total",
    "problems",
    "created_at",
)
_DATETIME_COLUMNS = frozenset(
    {"last_polled_at", "last_success_at", "failing_since", "next_poll_after", "last_slot", "created_at"}
)
_BOOL_COLUMNS = frozenset({"disabled", "down_alerted"})

# Columns a 304 (or an unchanged body) may change: health counters and validators only.
NOT_MODIFIED_COLUMNS = (
    "last_polled_at",
    "polls_total",
    "polls_not_modified",
    "last_status",
    "latency_avg",
    "etag",
    "last_modified",
    "body_hash",
    "last_success_at",
    "error_streak",
    "failing_since",
    "last_error_kind",
    "last_error",
    "next_poll_after",
    "last_slot",
)

_SELECT_STATES = f"SELECT {', '.join(FEED_STATE_COLUMNS)} FROM feed_state ORDER BY name"
# Written only if nobody polled, disabled, moved or alerted on the feed since it was read.
_UPDATE_NOT_MODIFIED = (
    "UPDATE feed_state SET "  # column names: the constants above
    + ", ".join(f"{c} = ?" for c in NOT_MODIFIED_COLUMNS)
    + " WHERE id = ? AND polls_total = ? AND current_url = ? AND disabled = 0 AND down_alerted = 0"
)


class FeedSnapshot(SimpleNamespace):
    """A ``feed_state`` row read without the ORM: the same attribute names and Python values
    (aware UTC datetimes, bools, the problems list) as ``FeedState``."""


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///<path>`` URL; None for anything else (PostgreSQL, memory
    databases, ``file:`` URIs, query options), which then takes the full store."""
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme not in ("sqlite", "sqlite+pysqlite") or not rest or "?" in rest:
        return None
    if rest == ":memory:" or rest.startswith("file:"):
        return None
    return Path(rest)


def to_db_datetime(value: datetime | None) -> str | None:
    """A datetime as SQLAlchemy's SQLite dialect stores ``UTCDateTime``: naive UTC, microseconds."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def from_db_datetime(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _snapshot(row: Sequence[Any]) -> FeedSnapshot:
    values = dict(zip(FEED_STATE_COLUMNS, row, strict=True))
    for c in _DATETIME_COLUMNS:
        values[c] = from_db_datetime(values[c])
    for c in _BOOL_COLUMNS:
        values[c] = bool(values[c])
    values["problems"] = json.loads(values["problems"]) if values["problems"] else []
    return FeedSnapshot(**values)


def _db_value(column: str, value: Any) -> Any:
    return to_db_datetime(value) if column in _DATETIME_COLUMNS else value


class LiteStore:
    """One ``sqlite3`` connection for the fast lane; every call holds a lock (the connection is
    shared by the threads ``anyio.to_thread`` runs store calls in)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, feeds: Iterable[tuple[str, str]]) -> LiteStore | None:
        """The lane for ``url``, or None when the full store must run first: not a plain SQLite
        file, no database yet, a schema at another revision than the scripts' head (or a head
        this cannot read: Alembic decides then), or configured feeds the database does not have
        (new, or a changed URL)."""
        path = sqlite_file(url)
        if path is None or not path.is_file():
            return None
        head = head_from_scripts()
        if head is None:
            return None
        conn = sqlite3.connect(
            path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            for pragma in SQLITE_PRAGMAS:
                conn.execute(pragma)
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            stored = dict(conn.execute("SELECT name, url FROM feed_state").fetchall())
        except sqlite3.Error:  # not our database, or an old one: the full store says what is wrong
            conn.close()
            return None
        if revision != [(head,)] or any(stored.get(name) != u for name, u in feeds):
            conn.close()
            return None
        return cls(conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def feed_states(self) -> list[FeedSnapshot]:
        with self._lock:
            rows = self._conn.execute(_SELECT_STATES).fetchall()
        return [_snapshot(row) for row in rows]

    def write_not_modified(self, rows: Sequence[dict[str, Any]]) -> set[int]:
        """``Store.write_not_modified`` through sqlite3: the health updates of feeds whose poll
        brought nothing new, in one transaction. A row whose feed changed since it was read (its
        counter or URL moved, it was disabled or alerted on) is not written; its id is returned."""
        if not rows:
            return set()
        skipped: set[int] = set()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")  # the write lock up front: no upgrade from a read
            try:
                for row in rows:
                    params = [_db_value(c, row[c]) for c in NOT_MODIFIED_COLUMNS]
                    params += [row["id"], row["expect_polls_total"], row["current_url"]]
                    if conn.execute(_UPDATE_NOT_MODIFIED, params).rowcount != 1:
                        skipped.add(row["id"])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return skipped
