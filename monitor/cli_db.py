"""``monitor db``: schema migrations (Alembic scripts under db/migrations).

``monitor db upgrade`` applies pending migrations (under the schema lock; ``monitor run`` and the
other commands do the same automatically). ``monitor db check`` reports the schema's state and
exits 1 when migrations are pending, so a deployment can gate on it.
"""

from __future__ import annotations

from typing import Any

import click

from monitor.cli import EXIT_RUNTIME, State, _fail, handle_errors, print_json
from monitor.store import redact


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
    from monitor.store.migrate import MigrationError, upgrade

    engine = _engine(state)
    try:
        applied = upgrade(engine, revision)
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
    from monitor.store.migrate import MigrationError, status

    engine = _engine(state)
    try:
        st = status(engine)
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
                "up_to_date": st.up_to_date,
            }
        )
    else:
        where = redact(state.config.database)
        if st.up_to_date:
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
    if not st.up_to_date:
        raise SystemExit(EXIT_RUNTIME)
