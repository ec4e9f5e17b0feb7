"""Schema migrations (Alembic, db/migrations): the models and the migrations agree, upgrades keep the
data, concurrent starts are serialised, `monitor db check/upgrade` report and apply."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect

from monitor.store import Store, make_engine
from monitor.store.migrate import (
    APSCHEDULER_TABLES,
    RevisionError,
    differences,
    head_revision,
    revisions,
    status,
    upgrade,
)
from tests.clusterkit import fresh_pg_database
from tests.conftest import Project


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.sqlite3'}"
        return
    with fresh_pg_database("sm_migrate") as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def test_models_and_migrations_agree(engine: sa.Engine) -> None:
    """Fails when a model changed without a migration: add one with
    `MONITOR_DATABASE_URL=sqlite:////tmp/x.db .venv/bin/alembic -c db/alembic.ini upgrade head` then
    `... revision --autogenerate -m "what changed"` (README, deployment section)."""
    applied = upgrade(engine, snapshot=False)  # the migrations themselves, on either database
    assert applied == revisions()
    with engine.connect() as conn:
        diff = differences(conn)
    assert diff == [], f"models and migrations differ; add a revision: {diff}"


def _schema(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    import sqlite3

    from monitor.store.snapshot import schema_statements

    conn = sqlite3.connect(path)
    try:
        return schema_statements(conn), conn.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        conn.close()


def _no_alembic(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the migrations ran: the schema snapshot was not used")


def test_a_new_sqlite_database_gets_the_schema_the_migrations_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty SQLite database is created from the schema snapshot (db/migrations/sqlite-schema.sql)
    in one script, not by replaying the migrations; the result is the same schema, statement for
    statement, at the same revision, and the models agree with it. Fails while the snapshot is
    stale: write it anew with `python -m monitor.store.snapshot` after adding a migration."""
    from monitor.store.snapshot import make_snapshot, read_snapshot, snapshot_path

    assert read_snapshot() is not None, "stale or missing schema snapshot: python -m monitor.store.snapshot"
    assert snapshot_path().read_text(encoding="utf-8") == make_snapshot(), (
        "the schema snapshot differs from what the migrations make (a new migration, or a new "
        "SQLAlchemy/Alembic that renders DDL differently): python -m monitor.store.snapshot"
    )
    made: dict[str, tuple[list[str], list[tuple[str, ...]]]] = {}
    for how in ("snapshot", "migrations"):
        path = tmp_path / f"{how}.sqlite3"
        eng = make_engine(f"sqlite:///{path}")
        try:
            if how == "snapshot":  # the snapshot path must not fall back to Alembic quietly
                with monkeypatch.context() as patch:
                    patch.setattr("alembic.command.upgrade", _no_alembic)
                    assert upgrade(eng) == revisions()
            else:
                assert upgrade(eng, snapshot=False) == revisions()
            assert status(eng).up_to_date
            with eng.connect() as conn:
                assert differences(conn) == []
        finally:
            eng.dispose()
        made[how] = _schema(path)
    assert made["snapshot"] == made["migrations"]
    statements, version = made["snapshot"]
    assert version == [(head_revision(),)]
    assert any("CREATE TABLE feed_state" in s for s in statements) and len(statements) > 10


def test_the_snapshot_is_only_for_an_empty_database_at_the_scripts_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot made at other revisions than the scripts' (a migration added since) is ignored:
    the migrations run. A database that is not empty never gets the snapshot's script."""
    import shutil

    from monitor.store.revisions import migrations_dir
    from monitor.store.snapshot import SNAPSHOT_FILE, read_snapshot

    copy = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), copy)
    text = (copy / SNAPSHOT_FILE).read_text(encoding="utf-8")
    first, rest = text.split("\n", 1)
    (copy / SNAPSHOT_FILE).write_text(first.rsplit(",", 1)[0] + "\n" + rest, encoding="utf-8")
    monkeypatch.setenv("MONITOR_MIGRATIONS_DIR", str(copy))
    assert read_snapshot() is None  # made before the last revision
    eng = make_engine(f"sqlite:///{tmp_path / 'stale.sqlite3'}")
    ran: list[str] = []
    import alembic.command

    real_upgrade = alembic.command.upgrade
    monkeypatch.setattr(
        alembic.command, "upgrade", lambda *a, **k: ran.append("alembic") or real_upgrade(*a, **k)
    )
    try:
        assert upgrade(eng) == revisions()
        assert ran == ["alembic"]  # through the migrations
        assert status(eng).up_to_date
    finally:
        eng.dispose()
    monkeypatch.undo()

    # Not empty (an older revision): the snapshot's CREATE statements would fail; the migrations
    # bring it up instead and keep its rows.
    eng = make_engine(f"sqlite:///{tmp_path / 'older.sqlite3'}")
    try:
        upgrade(eng, revisions()[0])
        written = _fill(eng)
        assert upgrade(eng) == revisions()[1:]
        with eng.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM feed_state")).scalar_one() == len(
                written["feed_state"]
            )
    finally:
        eng.dispose()


def _value(column: sa.Column[Any], row: int) -> Any:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return row % 2 == 0
    if isinstance(kind, sa.Integer):
        return row
    if isinstance(kind, sa.Float | sa.Numeric):
        return 0.5 + row
    if isinstance(kind, sa.DateTime):
        return datetime(2025, 10, 17, 8, row)
    if isinstance(kind, sa.JSON):
        return [f"Größe {row}"]
    length = getattr(kind, "length", None) or 40
    return f"Überprüfung {column.name} {row}"[:length]


def _fill(engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    """Two rows in every table of the current schema (parents first; row n refers to parents' row n)."""
    meta = sa.MetaData()
    meta.reflect(engine)
    written: dict[str, list[dict[str, Any]]] = {}
    with engine.begin() as conn:
        for table in meta.sorted_tables:
            if table.name in APSCHEDULER_TABLES or table.name == "alembic_version":
                continue
            rows = []
            for n in (1, 2):
                row = {}
                for col in table.columns:
                    if col.foreign_keys:
                        self_ref = any(fk.column.table.name == table.name for fk in col.foreign_keys)
                        row[col.name] = None if self_ref and col.nullable else n
                    elif col.primary_key:
                        row[col.name] = n
                    else:
                        row[col.name] = _value(col, n)
                rows.append(row)
            conn.execute(table.insert(), rows)
            written[table.name] = rows
    return written


@pytest.mark.parametrize("start", ["first", "previous"])
def test_upgrade_from_an_older_schema_keeps_every_row(engine: sa.Engine, start: str) -> None:
    order = revisions()
    assert len(order) >= 2, "the migration history should have an initial and a later revision"
    from_rev = order[0] if start == "first" else order[-2]
    upgrade(engine, from_rev)
    assert status(engine).current == from_rev
    written = _fill(engine)
    assert {"feed_state", "item", "story_match", "development", "delivery"} <= set(written)

    applied = upgrade(engine)
    assert applied == order[order.index(from_rev) + 1 :]
    assert status(engine).up_to_date
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for name, rows in written.items():
            table = meta.tables[name]
            key = next(iter(table.primary_key.columns))
            stored = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(key))]
            assert len(stored) == len(rows), f"{name}: rows lost"
            for before, after in zip(rows, stored, strict=True):
                for column, value in before.items():
                    if column in after:
                        assert after[column] == value, f"{name}.{column} changed"


def test_concurrent_upgrades_are_serialised(db_url: str) -> None:
    """Nodes starting at the same instant on an empty database: one migrates, the rest wait."""
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        eng = make_engine(db_url)
        try:
            barrier.wait()
            results.append(upgrade(eng))
        except BaseException as exc:
            errors.append(exc)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(map(len, results)) == [0, 0, 0, len(revisions())]


def test_a_database_created_before_migrations_is_adopted(tmp_path: Path) -> None:
    from sqlmodel import SQLModel

    from monitor.store.migrate import import_models

    url = f"sqlite:///{tmp_path / 'legacy.sqlite3'}"
    eng = make_engine(url)
    import_models()
    SQLModel.metadata.create_all(eng)  # how the first versions made the schema
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO feed_state (name, url, current_url, error_streak, disabled, down_alerted,"
                " polls_total, polls_not_modified, items_total, problems, created_at)"
                " VALUES ('alt', 'https://example.org/a', 'https://example.org/a', 0, 0, 0, 3, 0, 0, '[]',"
                " '2025-10-17 08:00:00')"
            )
        )
    assert status(eng).legacy
    store = Store(url, engine=eng)
    store.create_schema()
    assert status(eng).current == head_revision()
    assert [s.name for s in store.feed_states()] == ["alt"]
    assert store.feed_states()[0].polls_total == 3
    eng.dispose()


def test_db_check_and_upgrade_commands(project: Project) -> None:
    project.write({"feeds": []})
    pending = project.cli("db", "check")
    assert pending.exit_code == 1
    assert "pending" in pending.stdout and head_revision() in pending.stdout

    done = project.cli("db", "upgrade")
    assert done.exit_code == 0, done.stderr
    assert f"applied {len(revisions())} migration(s)" in done.stdout

    again = project.cli("db", "upgrade")
    assert again.exit_code == 0 and "already up to date" in again.stdout
    check = project.cli("db", "check", "--json")
    assert check.exit_code == 0
    assert check.json() == {
        "database": f"sqlite:///{project.db_path}",
        "current": head_revision(),
        "head": head_revision(),
        "pending": [],
        "legacy": False,
        "up_to_date": True,
        "drift": [],
    }
    # A model change without a migration: `db check` says so and exits 1.
    eng = make_engine(f"sqlite:///{project.db_path}")
    with eng.begin() as conn:
        conn.execute(sa.text("ALTER TABLE feed_state DROP COLUMN last_slot"))
    eng.dispose()
    drifted = project.cli("db", "check")
    assert drifted.exit_code == 1
    assert "a migration is missing" in drifted.stdout and "feed_state.last_slot" in drifted.stdout


def test_a_legacy_database_halfway_between_revisions_is_completed(tmp_path: Path) -> None:
    """Made by create_all from older models (a table and a column missing, one later column
    present): adopting it adds what is missing, keeps the rows, and lands on the head revision."""
    url = f"sqlite:///{tmp_path / 'half.sqlite3'}"
    eng = make_engine(url)
    upgrade(eng, revisions()[0])
    with eng.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("DROP TABLE delivery_attempt"))
        conn.execute(sa.text("ALTER TABLE feed_state ADD COLUMN feed_ttl FLOAT"))
        conn.execute(
            sa.text(
                "INSERT INTO feed_state (name, url, current_url, error_streak, disabled, down_alerted,"
                " polls_total, polls_not_modified, items_total, problems, created_at, feed_ttl)"
                " VALUES ('halb', 'https://example.org/h', 'https://example.org/h', 0, 0, 0, 1, 0, 0, '[]',"
                " '2025-10-17 08:00:00', 900)"
            )
        )
    assert status(eng).legacy
    store = Store(url, engine=eng)
    store.create_schema()
    assert status(eng).current == head_revision()
    with eng.connect() as conn:
        assert differences(conn) == []
    assert [(s.name, s.feed_ttl) for s in store.feed_states()] == [("halb", 900)]
    eng.dispose()


def test_commands_that_open_the_database_migrate_it(project: Project) -> None:
    project.write({"feeds": []})
    result = project.cli("items", "--json")
    assert result.exit_code == 0, result.stderr
    eng = make_engine(f"sqlite:///{project.db_path}")
    try:
        assert status(eng).current == head_revision()
        assert "alembic_version" in inspect(eng).get_table_names()
    finally:
        eng.dispose()


def test_the_start_up_check_reads_the_same_head_as_alembic(engine: sa.Engine) -> None:
    """Every start compares alembic_version with the head read from the scripts' text (no Alembic);
    it must name the head Alembic computes, and say "not at head" before the upgrade."""
    from monitor.store.migrate import _at_head
    from monitor.store.revisions import head_from_scripts

    assert head_from_scripts() == head_revision()
    assert not _at_head(engine)
    upgrade(engine)
    assert _at_head(engine)


def test_a_snapshot_that_fails_halfway_leaves_the_database_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot runs as one transaction: a statement that fails (a full disk, a broken script)
    leaves no table behind and is reported as a schema error naming the file (the CLI prints it
    and exits non-zero); the next start, with a working script, creates the database."""
    import shutil

    from monitor.store import StoreError
    from monitor.store.revisions import migrations_dir
    from monitor.store.snapshot import SNAPSHOT_FILE

    copy = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), copy)
    script = (copy / SNAPSHOT_FILE).read_text(encoding="utf-8")
    broken = script.replace("CREATE TABLE story_match", "CREATE TABLE story_match (oops;\nCREATE TABLE sm_x")
    assert broken != script
    (copy / SNAPSHOT_FILE).write_text(broken, encoding="utf-8")
    monkeypatch.setenv("MONITOR_MIGRATIONS_DIR", str(copy))
    path = tmp_path / "new.sqlite3"
    store = Store(f"sqlite:///{path}")
    try:
        with pytest.raises(StoreError, match=r"cannot create the database schema \(sqlite-schema\.sql\)"):
            store.create_schema()
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM sqlite_master")).scalar_one() == 0
        (copy / SNAPSHOT_FILE).write_text(script, encoding="utf-8")
        store.create_schema()
        assert status(store.engine).up_to_date
    finally:
        store.close()


def test_upgrade_refuses_an_unknown_revision_and_a_downgrade(engine: sa.Engine) -> None:
    first, head = revisions()[0], head_revision()
    known = ", ".join(revisions())
    with pytest.raises(RevisionError, match=rf"unknown revision 'bogus' \(known: {known}, head\)"):
        upgrade(engine, "bogus")
    assert upgrade(engine, first) == [first]
    assert upgrade(engine) == revisions()[1:]
    with pytest.raises(RevisionError, match=rf"at revision {head}, newer than {first}: .*downgrades are not"):
        upgrade(engine, first)
    assert status(engine).current == head
    assert upgrade(engine, head) == []


def test_db_upgrade_with_a_bad_revision_is_a_usage_error(project: Project) -> None:
    project.write({"feeds": []})
    bogus = project.cli("db", "upgrade", "--revision", "bogus")
    assert bogus.exit_code == 2 and bogus.stdout == ""
    assert "--revision: unknown revision 'bogus'" in bogus.stderr
    assert not project.db_path.exists()  # refused before the database was touched
    assert project.cli("db", "upgrade").exit_code == 0
    down = project.cli("db", "upgrade", "--revision", revisions()[0])
    assert down.exit_code == 2 and down.stdout == ""  # was: "migrating", then "already up to date"
    assert "downgrades are not supported" in down.stderr
    assert project.cli("db", "check").exit_code == 0  # still at the head
