"""The SQLite schema at the migrations' head as one SQL script, for creating a new database.

A new SQLite database used to be built by running every migration through Alembic: ~0.2 s of the
first start (importing Alembic, executing each script, autogenerate's bookkeeping), on the critical
path of a first poll. Like Rails' ``db/schema.rb`` ("load the schema, don't replay the
migrations, for a new database"), ``db/migrations/sqlite-schema.sql`` holds the schema the
migrations produce, dumped from SQLite's own catalogue; ``migrate.upgrade`` runs it (one
transaction, under the schema lock) when the database is empty and the snapshot's revision is the
scripts' head. Anything else (an existing database, a snapshot left behind by a new migration,
PostgreSQL) goes through the migrations as before.

``python -m monitor.store.snapshot`` writes the file anew after a migration is added;
``tests/test_migrations.py`` fails while it is stale or differs from what the migrations make.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

from monitor.store.revisions import APSCHEDULER_TABLES, migrations_dir, revisions_from_scripts

SNAPSHOT_FILE = "sqlite-schema.sql"
_HEADER = "-- story-monitor SQLite schema at revisions: "


def snapshot_path() -> Path:
    return migrations_dir() / SNAPSHOT_FILE


def schema_statements(conn: sqlite3.Connection) -> list[str]:
    """The ``CREATE`` statements of a database's tables, indexes, triggers and views, in the order
    they were made (parents before children), as SQLite keeps them."""
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
    ).fetchall()
    return [
        sql
        for _type, name, table, sql in rows
        if not name.startswith("sqlite_") and table not in APSCHEDULER_TABLES  # SQLite's, APScheduler's
    ]


def render(revisions: list[str], statements: list[str]) -> str:
    head = revisions[-1]
    body = "".join(f"{statement};\n" for statement in statements)
    return (
        f"{_HEADER}{','.join(revisions)}\n"
        "-- Made by `python -m monitor.store.snapshot` from the migrations; do not edit.\n"
        f"BEGIN;\n{body}INSERT INTO alembic_version (version_num) VALUES ('{head}');\nCOMMIT;\n"
    )


def read_snapshot() -> tuple[list[str], str] | None:
    """(revisions, script) when the snapshot is there and made at the scripts' current chain of
    revisions; None otherwise (then the migrations run)."""
    chain = revisions_from_scripts()
    try:
        script = snapshot_path().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    first, _, _ = script.partition("\n")
    if chain is None or not first.startswith(_HEADER) or first[len(_HEADER) :].split(",") != chain:
        return None
    return chain, script


def make_snapshot() -> str:
    """The snapshot's text: the migrations run through Alembic on an empty database, then dumped."""
    from monitor.store.database import make_engine
    from monitor.store.migrate import revisions, upgrade

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schema.sqlite3"
        engine = make_engine(f"sqlite:///{path}")
        try:
            upgrade(engine, snapshot=False)
        finally:
            engine.dispose()
        conn = sqlite3.connect(path)
        try:
            return render(revisions(), schema_statements(conn))
        finally:
            conn.close()


def main() -> int:
    path = snapshot_path()
    path.write_text(make_snapshot(), encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
