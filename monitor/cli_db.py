"""``monitor db``: schema migrations (Alembic scripts under db/migrations).

``monitor db upgrade`` applies pending migrations (under the schema lock; ``monitor run`` and the
other commands do the same automatically). ``monitor db check`` reports the schema's state and
exits 1 when migrations are pending, so a deployment can gate on it.
"""

from __future__ import annotations

from typing import Any

import click

from monitor.cli import EXIT_CONFIG, EXIT_RUNTIME, State, _fail, handle_errors, print_json


def _engine(state: State) -> Any:
    from monitor.store.database import make_engine

    return make_engine(state.config.database)


@click.group("db")
def db() -> None:
    """Database schema: apply or check migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_obj
@handle_errors
def upgrade_cmd(state: State, revision: str) -> None:
    """Apply pending migrations (safe while other nodes start: it takes the schema lock)."""
    from monitor.store import redact
    from monitor.store.migrate import MigrationError, RevisionError, upgrade

    engine = _engine(state)
    try:
        applied = upgrade(engine, revision)
    except RevisionError as exc:  # a bad --revision: a usage error
        _fail(f"--revision: {exc}", EXIT_CONFIG)
    except MigrationError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    finally:
        engine.dispose()
    where = redact(state.config.database)
    if applied:
        click.echo(f"{where}: applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo(f"{where}: already up to date")


@db.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.pass_obj
@handle_errors
def check_cmd(state: State, as_json: bool) -> None:
    """Report the schema revision and pending migrations; exit 1 when any are pending."""
    from monitor.store import redact
    from monitor.store.migrate import MigrationError, differences, status

    engine = _engine(state)
    try:
        st = status(engine)
        drift: list[str] = []
        if st.up_to_date:  # at head: do the models still match? (a model change without a migration)
            with engine.connect() as conn:
                drift = [_describe(d) for d in differences(conn)]
    except MigrationError as exc:
        _fail(str(exc), EXIT_RUNTIME)
    finally:
        engine.dispose()
    if as_json:
        print_json(
            {
                "database": redact(state.config.database),
                "current": st.current,
                "head": st.head,
                "pending": st.pending,
                "legacy": st.legacy,
                "up_to_date": st.up_to_date and not drift,
                "drift": drift,
            }
        )
    else:
        where = redact(state.config.database)
        if st.up_to_date and drift:
            click.echo(
                f"{where}: at revision {st.current}, but the models differ from it "
                f"(a migration is missing): {'; '.join(drift)}"
            )
        elif st.up_to_date:
            click.echo(f"{where}: up to date (revision {st.current})")
        elif st.legacy:
            click.echo(
                f"{where}: created before migrations existed; `monitor db upgrade` adopts it "
                f"and applies what is missing"
            )
        else:
            click.echo(
                f"{where}: at revision {st.current or 'none (empty database)'}, head is {st.head}; "
                f"{len(st.pending)} pending: {', '.join(st.pending)}"
            )
    if not st.up_to_date or drift:
        raise SystemExit(EXIT_RUNTIME)


def _describe(diff: Any) -> str:
    """One alembic autogenerate difference as text, e.g. ``add_column feed_state.last_slot``."""
    if isinstance(diff, list):  # column modifications come grouped
        return ", ".join(_describe(d) for d in diff)
    op = diff[0]
    if op in ("add_column", "remove_column"):
        return f"{op} {diff[2]}.{diff[3].name}"
    if op in ("add_table", "remove_table"):
        return f"{op} {diff[1].name}"
    if op in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        return f"{op} {getattr(diff[1], 'name', diff[1])}"
    if op.startswith("modify_"):
        return f"{op} {diff[2]}.{diff[3]}"
    return str(op)
