"""Engines and connection settings. SQLite gets WAL and a busy timeout so the CLI can read while the
daemon writes; PostgreSQL goes through psycopg 3."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from monitor.store.sqlite_settings import SQLITE_BUSY_TIMEOUT_MS, SQLITE_PRAGMAS, is_sqlite_url


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3, the driver we ship. ``~`` in a SQLite
    path is the home folder, as in the config file (SQLite would create a folder named ``~``): the
    same ``$MONITOR_DATABASE_URL`` names the same file for the ``alembic`` command line."""
    if is_sqlite_url(url) and ":///~" in url:
        scheme, _, path = url.partition(":///")
        url = f"{scheme}:///{os.path.expanduser(path)}"
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def async_url(url: str) -> str:
    """The async-driver form of a database URL (for APScheduler's data store)."""
    u = make_url(normalise_url(url))
    if u.get_backend_name() == "sqlite":
        return u.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if u.get_backend_name() == "postgresql":
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return is_sqlite_url(normalise_url(url))


def missing_sqlite_file(url: str) -> bool:
    """A SQLite URL whose file does not exist yet: opening it would create an empty database, which
    a command that only reads must not do."""
    if not is_sqlite(url):
        return False
    path = make_url(normalise_url(url)).database
    return not path or not Path(path).exists()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            poolclass=NullPool if database in (None, "", ":memory:") else None,
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args=postgres_keepalives(url), **kwargs)


# TCP keepalives on PostgreSQL connections, both ends. The server's (options -c tcp_keepalives_*):
# a node whose host vanishes (power, network) holds its advisory locks (the feeds it was polling,
# its node id) until the server notices the dead connection, by default after ~2 h 11 min; with
# these, ~25 s. The client's (libpq keepalives*): a server that vanishes is noticed likewise, instead
# of a query waiting for hours.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3


def postgres_keepalives(url: str) -> dict[str, Any]:
    """psycopg connect arguments for ``url`` (a PostgreSQL URL) that set both ends' keepalives;
    settings the URL gives itself (``?keepalives_idle=``, ``?options=-c tcp_keepalives_idle=``)
    stand."""
    query = make_url(url).query
    args: dict[str, Any] = {
        key: value
        for key, value in (
            ("keepalives", 1),
            ("keepalives_idle", KEEPALIVE_IDLE),
            ("keepalives_interval", KEEPALIVE_INTERVAL),
            ("keepalives_count", KEEPALIVE_COUNT),
        )
        if key not in query
    }
    given = query.get("options", "")
    options = str(given if isinstance(given, str) else " ".join(given))
    server = [
        f"-c {name}={value}"
        for name, value in (
            ("tcp_keepalives_idle", KEEPALIVE_IDLE),
            ("tcp_keepalives_interval", KEEPALIVE_INTERVAL),
            ("tcp_keepalives_count", KEEPALIVE_COUNT),
        )
        if name not in options
    ]
    if server:
        args["options"] = " ".join([*([options] if options else []), *server])
    return args


def redact(url: str) -> str:
    """The URL with its password hidden, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable database URL>"
