"""SQLite connection settings, shared by SQLAlchemy's engines (``database.make_engine``,
APScheduler's data store) and the ``sqlite3`` fast lane (``lite``). No SQLAlchemy here: the fast
lane must not import it."""

from __future__ import annotations

SQLITE_BUSY_TIMEOUT_MS = 30_000

# Run on every new connection. WAL and a busy timeout so the CLI can read while the daemon writes.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous=NORMAL",
    # A checkpoint every ~40 MB of WAL instead of every 4 MB: a first poll of hundreds of feeds
    # otherwise checkpoints (and fsyncs) dozens of times, copying the same hot pages each time.
    "PRAGMA wal_autocheckpoint=10000",
    # Statement journals (every multi-row INSERT inside a larger transaction keeps one) in memory,
    # not in /var/tmp files: they were half of a first poll's page writes (~50,000 of ~94,000).
    "PRAGMA temp_store=MEMORY",
    "PRAGMA foreign_keys=ON",
)


def is_sqlite_url(url: str) -> bool:
    """Whether a database URL (``sqlite://``, ``sqlite+pysqlite://``, ...) names SQLite."""
    return url.partition(":")[0].partition("+")[0] == "sqlite"
