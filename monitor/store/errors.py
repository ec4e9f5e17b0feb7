"""What a database error says, for the one-line message of the CLI (``describe``).

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
