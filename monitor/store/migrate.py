"""Schema migrations (Alembic, scripts under ``db/migrations``) and the schema lock.

Every command that opens the database calls ``upgrade``: a fast read of ``alembic_version`` when the
schema is current, otherwise the pending migrations under a lock, so several nodes (or a daemon and
a CLI command) starting at the same moment never run DDL concurrently:

- PostgreSQL: a session-level advisory lock (``SCHEMA_LOCK_KEY``); PostgreSQL releases it by itself
  when the holder dies, so a crashed node cannot leave it behind.
- SQLite: an ``flock`` on ``<database>.lock`` next to the file (also released by the kernel on death).

An empty SQLite database is not migrated step by step: it gets the head's schema from one script
(``monitor.store.snapshot``, ``db/migrations/sqlite-schema.sql``), under the same lock.

APScheduler's own tables (``tasks``, ``schedules``, ``jobs``, ``job_results``, ``metadata``) are not
ours: APScheduler creates them, and the migrations and the drift check ignore them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import make_url

from monitor.store.revisions import APSCHEDULER_TABLES, MigrationError, head_from_scripts, migrations_dir

log = logging.getLogger(__name__)
# Alembic narrates every step at INFO; our own log line says what was migrated.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

# pg_advisory_lock key shared by migrations and APScheduler's table creation ("story-monitor schema").
SCHEMA_LOCK_KEY = 0x53_4D_5343_4845_4D41 & 0x7FFF_FFFF_FFFF_FFFF
LEGACY_MARKER_TABLE = "feed_state"  # a database made by create_all before migrations existed


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic filter: APScheduler's tables (and their indexes) are not part of our schema."""
    if type_ == "table" and name in APSCHEDULER_TABLES:
        return False
    table = getattr(obj, "table", None)
    return not (table is not None and getattr(table, "name", None) in APSCHEDULER_TABLES)


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _script().get_current_head()
    if head is None:
        raise MigrationError("no migration scripts found")
    return head


def revisions() -> list[str]:
    """All revision ids, oldest first."""
    return [r.revision for r in reversed(list(_script().walk_revisions()))]


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str
    pending: list[str]
    legacy: bool  # tables exist but no alembic_version (made by create_all before migrations)

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.legacy


def status(engine: Engine) -> SchemaStatus:
    head = head_revision()
    with engine.connect() as conn:
        current = current_revision(conn)
        legacy = current is None and inspect(conn).has_table(LEGACY_MARKER_TABLE)
    order = revisions()
    pending = order[order.index(current) + 1 :] if current in order else list(order)
    if current is not None and current not in order:
        raise MigrationError(
            f"the database is at revision {current!r}, which these migration scripts do not know "
            "(a newer version of story-monitor?)"
        )
    return SchemaStatus(current, head, pending, legacy)


@contextlib.contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """Hold the cluster-wide schema lock; yields a connection the caller may use for DDL."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                with contextlib.suppress(Exception):
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
                    conn.commit()
        return
    with _file_lock(engine), engine.connect() as conn:
        yield conn


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    path = Path(os.path.realpath(database) + ".lock")  # the file's own name, not a symlink's
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _at_head(engine: Engine) -> bool:
    """The cheap check done on every start: one row of ``alembic_version`` against the head read from
    the scripts. False whenever unsure (no version table, several rows, unreadable scripts)."""
    head = head_from_scripts()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    except Exception:  # no version table yet (empty or legacy database): Alembic's path decides
        return False
    return len(rows) == 1 and rows[0][0] == head


class RevisionError(MigrationError):
    """The requested revision is not one of the scripts', or older than the database's (the
    migrations only go forward): a bad argument, not a failure of the database."""


def upgrade(engine: Engine, revision: str = "head", *, snapshot: bool = True) -> list[str]:
    """Bring the schema to ``revision`` (``head`` or a revision id) under the schema lock. Returns
    the revisions applied. ``snapshot``: an empty SQLite database gets the head's schema from
    ``monitor.store.snapshot`` (one script) instead of every migration through Alembic. Raises
    ``RevisionError`` for an unknown revision or one older than the database's."""
    if revision != "head" and revision not in (known := revisions()):
        raise RevisionError(f"unknown revision {revision!r} (known: {', '.join(known)}, head)")
    if revision == "head":
        if _at_head(engine):
            return []
        created = _create_from_snapshot(engine) if snapshot else None
        if created is not None:
            return created
        first = status(engine)
        if first.up_to_date:
            return []
    from alembic import command

    with schema_lock(engine) as conn:
        current = current_revision(conn)  # again, under the lock: another node may have done it
        order = revisions()
        if current is None and inspect(conn).has_table(LEGACY_MARKER_TABLE):
            current = _adopt_legacy(conn)
        target = order[-1] if revision == "head" else revision
        if current == target:
            conn.commit()
            return []
        if current in order and order.index(target) < order.index(current):
            raise RevisionError(
                f"the database is at revision {current}, newer than {target}: the migrations only go "
                "forward (downgrades are not supported; restore a backup taken before the upgrade)"
            )
        start = order.index(current) + 1 if current in order else 0
        applied = order[start : order.index(target) + 1]
        log.info("migrating the database schema", extra={"from": current or "empty", "to": target})
        command.upgrade(alembic_config(conn), revision)
        conn.commit()
        return applied


def _create_from_snapshot(engine: Engine) -> list[str] | None:
    """An empty SQLite database: the schema snapshot, in one transaction, under the schema lock.
    Returns the revisions it stands for; None (the migrations decide) when this is not SQLite, the
    snapshot is missing or stale, or the database is not empty."""
    if engine.dialect.name != "sqlite":
        return None
    from monitor.store.snapshot import read_snapshot, snapshot_path

    found = read_snapshot()
    if found is None:
        return None
    chain, script = found
    with schema_lock(engine) as conn:
        empty = conn.execute(text("SELECT count(*) FROM sqlite_master")).scalar_one() == 0
        conn.commit()
        if not empty:  # made by someone else meanwhile, or not ours: the migrations decide
            return None
        log.info("creating the database schema", extra={"revision": chain[-1], "from": "snapshot"})
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        # The script is one transaction (BEGIN ... COMMIT): a failure or a crash leaves the
        # database empty, and the next start tries again.
        try:
            driver.executescript(script)
        except sqlite3.Error as exc:
            if driver.in_transaction:
                driver.rollback()
            raise MigrationError(
                f"cannot create the database schema ({snapshot_path().name}): {exc}"
            ) from exc
    return chain


def _adopt_legacy(conn: Connection) -> str:
    """A database created by ``create_all`` before migrations existed (possibly from older models):
    add what the models have and it lacks (tables, indexes, columns; nothing is dropped or changed),
    then stamp it with the head revision."""
    from alembic import command
    from alembic.autogenerate import produce_migrations
    from alembic.operations import Operations
    from alembic.operations import ops as alembic_ops
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import_models()
    ctx = MigrationContext.configure(conn, opts={"include_object": include_object})
    script = produce_migrations(ctx, SQLModel.metadata)
    operations = Operations(ctx)
    additive = (alembic_ops.CreateTableOp, alembic_ops.CreateIndexOp, alembic_ops.AddColumnOp)
    added = []

    def apply(op_list: list[Any]) -> None:
        for op in op_list:
            if isinstance(op, alembic_ops.ModifyTableOps):
                apply(op.ops)
            elif isinstance(op, additive):
                operations.invoke(op)
                added.append(type(op).__name__)

    apply(script.upgrade_ops.ops)
    target = revisions()[-1]
    log.warning(
        "database has no migration history; adopting it",
        extra={"stamped": target, "added": ", ".join(added) or "nothing"},
    )
    command.stamp(alembic_config(conn), target)
    conn.commit()
    return target


def differences(conn: Connection) -> list[Any]:
    """Differences between the models and the schema of ``conn`` (empty when they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import_models()
    ctx = MigrationContext.configure(
        conn, opts={"include_object": include_object, "compare_type": True, "compare_server_default": False}
    )
    return list(compare_metadata(ctx, SQLModel.metadata))


def import_models() -> None:
    """Import every module of monitor.store, so SQLModel.metadata knows every table."""
    import importlib
    import pkgutil

    import monitor.store as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def prepare_schema(engine: Engine) -> None:
    """What ``Store.create_schema`` does: apply pending migrations under the schema lock."""
    upgrade(engine)
