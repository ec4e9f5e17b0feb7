"""Alembic environment for story-monitor: the models' metadata, APScheduler's tables excluded.

The connection comes from ``monitor.store.migrate`` (``config.attributes["connection"]``, used by
``monitor db upgrade`` and at start-up) or, for the ``alembic`` command line, from
``$MONITOR_DATABASE_URL`` / ``sqlalchemy.url`` in db/alembic.ini.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

from monitor.store.database import make_engine, normalise_url
from monitor.store.migrate import import_models, include_object

config = context.config
import_models()
target_metadata = SQLModel.metadata


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Migrations must not import the application's types: render them as plain SQLAlchemy."""
    if type_ == "type":
        from sqlmodel.sql.sqltypes import AutoString

        from monitor.store.models import UTCDateTime

        if isinstance(obj, UTCDateTime):
            return "sa.DateTime()"
        if isinstance(obj, AutoString):
            length = getattr(obj, "length", None)
            return f"sa.String(length={length})" if length else "sa.String()"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_item=render_item,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER on SQLite needs batch mode
    )


def run_migrations_offline() -> None:
    url = os.environ.get("MONITOR_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    context.configure(
        url=normalise_url(url or ""),
        target_metadata=target_metadata,
        include_object=include_object,
        render_item=render_item,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("MONITOR_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set MONITOR_DATABASE_URL (or sqlalchemy.url in db/alembic.ini)")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
