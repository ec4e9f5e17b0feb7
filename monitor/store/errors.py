"""What a database error says, for the one-line message of the CLI (``describe``), and whether it
is the whole database's failure or one write's (``database_failed``).

No SQLAlchemy import here: the SQLite fast lane (``monitor.store.lite``, stdlib ``sqlite3``) raises
without it, and an exception can only be one of SQLAlchemy's (or a ``StoreError``) when the module
that defines it was loaded."""

from __future__ import annotations

import sqlite3
import sys


def _sqlalchemy_error(exc: BaseException) -> bool:
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError)


def _store_error(exc: BaseException) -> bool:
    store = sys.modules.get("monitor.store.store")
    return store is not None and isinstance(exc, store.StoreError)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions an exception group holds, its nested groups flattened; else ``[exc]`` (a
    failure inside a task group arrives wrapped, often once per task)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def describe(exc: BaseException) -> str | None:
    """``exc`` in one line when it is a database error (the ``StoreError``'s own message, else the
    driver's error without the statement and parameters SQLAlchemy appends), else None."""
    if _store_error(exc):
        return str(exc)
    if _sqlalchemy_error(exc):
        orig = getattr(exc, "orig", None) or exc
        return f"{type(exc).__name__}: {orig}"
    if isinstance(exc, sqlite3.Error):  # the fast lane's
        return f"{type(exc).__name__}: {exc}"
    return None


# SQLite's primary result codes that mean the database as a whole cannot be written now, not one
# write's data: every other feed's write would fail the same way.
_SQLITE_WHOLE_DATABASE = frozenset(
    {
        5,  # SQLITE_BUSY: locked by another process beyond the busy timeout
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY
        10,  # SQLITE_IOERR: a failed write (a file size limit), a vanished file
        11,  # SQLITE_CORRUPT
        13,  # SQLITE_FULL
        14,  # SQLITE_CANTOPEN
        26,  # SQLITE_NOTADB
    }
)
# The same as PostgreSQL SQLSTATE classes: connection exception, insufficient resources (disk full,
# out of memory, too many connections), operator intervention (shutdown), system error (I/O),
# internal error (corruption). A constraint violation, a deadlock or bad data is one write's.
_POSTGRES_WHOLE_DATABASE = frozenset({"08", "53", "57", "58", "XX"})


def database_failed(exc: BaseException) -> bool:
    """Whether ``exc`` means the database as a whole failed (unreachable, locked, full, read-only,
    corrupt), rather than one write or one feed's poll: a poll of many feeds stops on it instead of
    recording the same failure for each feed (``Monitor.poll``)."""
    if _store_error(exc):
        cause = exc.__cause__
        if cause is None:  # the store's own: a feed not in the database
            return False
        # What a group commit's batch failed of as a whole (or its cancellation: the poll stops).
        return not isinstance(cause, Exception) or database_failed(cause)
    if _sqlalchemy_error(exc):
        orig = getattr(exc, "orig", None)  # the driver's error (or the Python one a statement raised)
        if orig is not None:
            return database_failed(orig)
        sa_exc = sys.modules["sqlalchemy.exc"]
        return isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError)  # no connection
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)  # None: the module's own (a bad parameter)
        return code is not None and code & 0xFF in _SQLITE_WHOLE_DATABASE
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        sqlstate = exc.sqlstate
        if sqlstate is None:
            # The client's own: a failed or lost connection is the database's; a value it cannot
            # send (a NUL byte, a type it cannot adapt) is that write's.
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return sqlstate[:2] in _POSTGRES_WHOLE_DATABASE
    return False
