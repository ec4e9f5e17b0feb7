"""``monitor serve``, ``monitor export`` and ``monitor feeds import|export`` (OPML).

Registered on the main CLI by ``register(cli)``. ``feeds`` becomes a group whose bare invocation
is the existing listing command, unchanged (same options, same output).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from monitor.cli import (
    EXIT_CONFIG,
    EXIT_RUNTIME,
    State,
    _fail,
    _open_store,
    handle_errors,
    print_json,
)

log = logging.getLogger("monitor.web")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(config: Any) -> str | None:
    """The bearer token from the environment variable named by ``web.token_env``."""
    name = config.web.token_env
    if not name:
        return None
    token = os.environ.get(name, "").strip()
    if not token:
        _fail(f"{config.source}: web.token_env: environment variable {name} is not set or empty", EXIT_CONFIG)
    return token


# --- serve -------------------------------------------------------------------------------------


class DeskListener:
    """A bound listening socket for the story desk, bound before anything starts so that a port in
    use is a clear error (exit 1) rather than a traceback from inside the server."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_RUNTIME)
        sock.listen(128)
        sock.setblocking(False)
        self.sock = sock
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{sock.getsockname()[1]}/"

    def close(self) -> None:
        self.sock.close()


def desk_listener(config: Any, host: str | None, port: int | None) -> tuple[DeskListener, str | None]:
    """Bind the desk's address (CLI options over the ``web`` config) and resolve its token."""
    host = host or config.web.host
    port = config.web.port if port is None else port
    token = resolve_token(config)
    if not _is_loopback(host) and not token:
        log.warning(
            "serving on a non-loopback address without a token: anyone who can reach it can read it",
            extra={"host": host},
        )
    return DeskListener(host, port), token


def desk_server(config: Any, token: str | None, *, own_signals: bool) -> Any:
    """A uvicorn server for the desk app. ``own_signals=False`` when embedded in ``monitor run``,
    whose own SIGINT/SIGTERM handling stops the desk together with the daemon."""
    import uvicorn

    from monitor.web import create_app

    server_class = uvicorn.Server
    if not own_signals:

        class EmbeddedServer(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        server_class = EmbeddedServer
    return server_class(
        uvicorn.Config(
            create_app(config, token=token),
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            lifespan="off",
        )
    )


async def serve_desk_until(server: Any, listener: DeskListener, stop: Any) -> None:
    """Serve until ``stop`` (an anyio.Event) is set, then shut the desk down gracefully."""
    import anyio

    async with anyio.create_task_group() as tg:

        async def stop_when_asked() -> None:
            await stop.wait()
            server.should_exit = True

        tg.start_soon(stop_when_asked)
        await server.serve([listener.sock])
        tg.cancel_scope.cancel()


@click.command()
@click.option("--host", default=None, help="Address to bind (default: web.host, 127.0.0.1).")
@click.option(
    "--port", default=None, type=click.IntRange(0, 65535), help="Port (default: web.port, 8080; 0: any)."
)
@click.pass_obj
@handle_errors
def serve(state: State, host: str | None, port: int | None) -> None:
    """Serve the read-only story desk: dashboard, JSON API (/openapi.json) and Atom feeds."""
    import anyio

    config = state.config
    listener, token = desk_listener(config, host, port)
    click.echo(f"serving the story desk on {listener.url}" + (" (bearer token required)" if token else ""))
    sys.stdout.flush()
    log.info("serving", extra={"url": listener.url, "token": bool(token)})
    server = desk_server(config, token, own_signals=True)
    # uvicorn re-raises the stop signal to the handler in place before it started: make that a
    # no-op so SIGINT/SIGTERM end `monitor serve` cleanly with exit 0 after a graceful shutdown.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        anyio.run(server.serve, [listener.sock])
    finally:
        listener.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")


# --- export ------------------------------------------------------------------------------------


def _write_output(text: str | bytes, output: str | None) -> None:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from monitor.opml import _atomic_write

    path = Path(output)  # type: ignore[arg-type]
    if not path.parent.exists():
        _fail(f"--output: folder {path.parent} does not exist", EXIT_CONFIG)
    if path.is_dir():
        _fail(f"--output: {path} is a folder; name a file in it", EXIT_CONFIG)
    try:
        _atomic_write(path, data.decode("utf-8"))
    except OSError as exc:
        _fail(f"--output: cannot write {path}: {exc.strerror or exc}", EXIT_RUNTIME)


@click.command("export")
@click.option("--story", "story_id", required=True, metavar="ID", help="The story to export.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["atom", "json", "csv"]),
    default="atom",
    show_default=True,
    help="Format.",
)
@click.option("--output", "-o", metavar="FILE", help="Write to FILE (atomically) instead of stdout.")
@click.option("--base-url", metavar="URL", help="Dashboard URL for the Atom links (default: web.base_url).")
@click.pass_obj
@handle_errors
def export_cmd(state: State, story_id: str, fmt: str, output: str | None, base_url: str | None) -> None:
    """A story's developments as Atom 1.0, JSON or CSV (newest first)."""
    from monitor.config import check_http_url
    from monitor.web import export, views

    config = state.config
    if base_url:
        try:
            base_url = check_http_url(base_url)
        except ValueError as exc:
            _fail(f"--base-url: {exc}", EXIT_CONFIG)
    base_url = (base_url or config.web.base_url or "").rstrip("/") or None
    store = _open_store(config)
    # A story removed from the config can still be exported (archived) while the database has it,
    # as the story desk still serves it.
    stories = {s["id"]: s for s in views.stories(config, store)}
    if story_id not in stories:
        _fail(f"--story: unknown story {story_id!r} (known: {', '.join(stories) or 'none'})", EXIT_CONFIG)
    devs = views.developments(store, story_id)
    if fmt == "atom":
        title = stories[story_id]["title"]
        body: str | bytes = export.developments_atom(
            story_id,
            title,
            devs,
            self_url=f"{base_url}/stories/{story_id}/developments.atom" if base_url else None,
            alternate_url=f"{base_url}/stories/{story_id}" if base_url else None,
        )
    elif fmt == "json":
        body = export.developments_json(devs)
    else:
        body = export.developments_csv(devs)
    _write_output(body, output)


# --- feeds import / export (OPML) -------------------------------------------------------------


@click.command("export")
@click.option("--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")
@click.pass_obj
@handle_errors
def feeds_export(state: State, output: str | None) -> None:
    """The configured feeds as OPML 2.0, for any feed reader."""
    from monitor.opml import export_opml

    _write_output(export_opml(state.config), output)


@click.command("import")
@click.argument("opml_file", metavar="FILE.opml", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--dry-run", is_flag=True, help="Show what would be added; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Report as JSON.")
@click.pass_obj
@handle_errors
def feeds_import(state: State, opml_file: str, dry_run: bool, as_json: bool) -> None:
    """Add the feeds of an OPML file to the config file (feeds already configured are skipped).

    The config file is edited in place, keeping its comments and layout; it is validated first
    and replaced atomically, so a failed import changes nothing."""
    from monitor.config import load_config
    from monitor.opml import OpmlError, import_into_config, locked_config, parse_opml, plan_import

    config = state.config
    try:
        data = sys.stdin.buffer.read() if opml_file == "-" else Path(opml_file).read_bytes()
    except OSError as exc:
        _fail(f"{opml_file}: cannot read: {exc.strerror or exc}", EXIT_CONFIG)
    try:
        found, skipped = parse_opml(data, opml_file)
    except OpmlError as exc:
        _fail(str(exc), EXIT_CONFIG)
    plan = plan_import(config, found, skipped)
    if plan.added and not dry_run:
        if config.source == "<defaults>":
            _fail("no config file to import into (use --config PATH)", EXIT_CONFIG)
        path = Path(config.source)
        with locked_config(path):
            # Planned again on the file as it is now, under the lock: another import (or an
            # editor) may have changed it since this command read it.
            plan = plan_import(load_config(path), found, skipped)
            if plan.added:
                import_into_config(path, plan.added)
    if as_json:
        print_json(
            {
                "config": config.source,
                "dry_run": dry_run,
                "added": [{"name": f.name, "url": f.url} for f in plan.added],
                "already_configured": [{"name": f.name, "url": f.url} for f in plan.already_configured],
                "invalid": [{"outline": what, "problem": why} for what, why in plan.invalid],
            }
        )
        return
    verb = "would add" if dry_run else "added"
    click.echo(
        f"{verb} {len(plan.added)} feeds to {config.source}; "
        f"{len(plan.already_configured)} already configured, {len(plan.invalid)} invalid"
    )
    for f in plan.added:
        click.echo(f"  + {f.name}: {f.url}")
    for what, why in plan.invalid:
        click.echo(f"  ! {what}: {why}")


def feeds_group_from(listing: click.Command) -> click.Group:
    """A ``feeds`` group with ``import``/``export`` whose bare invocation runs ``listing`` with the
    same options (copied from it, so the listing can grow options without touching this)."""

    @click.pass_context
    def callback(ctx: click.Context, **kwargs: Any) -> None:
        if ctx.invoked_subcommand is None:
            ctx.invoke(listing, **kwargs)

    group = click.Group(
        name="feeds",
        callback=callback,
        params=list(listing.params),
        help=(listing.help or "").rstrip()
        + "\n\nWith a subcommand: import or export the feed list as OPML 2.0.",
        short_help=listing.short_help,
        invoke_without_command=True,
    )
    group.add_command(feeds_import)
    group.add_command(feeds_export)
    return group


def register(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(export_cmd)
    listing = cli.commands.get("feeds")
    if listing is not None and not isinstance(listing, click.Group):
        cli.add_command(feeds_group_from(listing))
