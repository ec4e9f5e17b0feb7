"""``monitor`` command line: a thin shell over ``Monitor`` and the store's queries.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error. Human output goes to
stdout, logs to stderr; ``--json`` prints JSON only.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, NoReturn

import click

from monitor.logs import setup_logging

if TYPE_CHECKING:
    from monitor.config import Config

# Imports are kept out of this module's top level (and out of the commands' modules): the config
# (pydantic), SQLAlchemy, httpx, the parsers, matching, diffing and rich are imported by the command
# that uses them, so `monitor poll` in which nothing changed does not pay for what it does not use,
# and `monitor --help` pays for none of it.
# tests/test_cli_startup.py checks which modules a warm poll leaves unimported.

log = logging.getLogger("monitor")

EXIT_RUNTIME = 1
EXIT_CONFIG = 2


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"monitor: error: {message}", err=True)
    sys.exit(code)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=_json_default))


def _console() -> Any:
    from rich.console import Console

    # Piped output is not cut to rich's 80-column default: tables stay readable in files and pagers.
    width = None if sys.stdout.isatty() else 200
    return Console(no_color=bool(os.environ.get("NO_COLOR")), highlight=False, soft_wrap=False, width=width)


def _local(ts: datetime | None) -> str:
    if ts is None:
        return "-"
    try:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(os.environ.get("MONITOR_TIMEZONE", "Europe/Berlin"))
    except Exception:
        zone = UTC
    return ts.astimezone(zone).strftime("%Y-%m-%d %H:%M")


class State:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from monitor.config import ConfigError, config_path_from, load_config

            path = config_path_from(self.config_path)
            try:
                self._config = load_config(path)
            except ConfigError as exc:
                _fail(str(exc), EXIT_CONFIG)
            # Every command reads the config before its real work: the collector is on from here.
            _freeze_long_lived_objects()
        return self._config


def _expected_failure(exc: BaseException, state: State | None) -> tuple[str, int] | None:
    """The one-line message and exit code of a failure the CLI expects; None for anything else (a
    bug: its traceback is printed)."""
    from monitor.baseline import BaselineError
    from monitor.config import ConfigError

    if isinstance(exc, ConfigError | BaselineError):
        return str(exc), EXIT_CONFIG
    from monitor.store.errors import describe

    what = describe(exc)
    if what is not None:
        config = state._config if state is not None else None
        if config is not None:  # which database: the config may name another than the user thinks
            from monitor.store import redact

            what += f" ({redact(config.database)})"
        return f"database: {what}", EXIT_RUNTIME
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}", EXIT_RUNTIME
    return None


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into a message and the documented exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            # A failure inside a task group (a poll's feeds, the daemon, the desk) arrives wrapped
            # in an ExceptionGroup, often holding the same database error once per task: reported
            # once (a configuration error before a runtime one). A group holding anything else (a
            # bug) keeps its traceback.
            state = next((a for a in args if isinstance(a, State)), None)
            from monitor.store.errors import leaves as exception_leaves

            leaves = exception_leaves(exc)
            failures = [f for leaf in leaves if (f := _expected_failure(leaf, state)) is not None]
            if len(failures) < len(leaves):
                raise
            message, code = max(failures, key=lambda f: f[1])
            _fail(message, code)

    return wrapper


def run_async(coro_fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    import anyio

    return anyio.run(coro_fn, *args)


# True when this process is the `monitor` command (``main``), not a host such as a test runner.
_own_process = False


def _freeze_long_lived_objects() -> None:
    """Move every object alive now (modules, classes, SQLAlchemy metadata, the config: several
    hundred thousand objects, nearly all of them kept until exit) out of the cyclic garbage
    collector's generations (``gc.freeze``), and turn the collector on (``main`` turns it off for
    start-up). Every full collection traverses them otherwise: while start-up creates them (~60 ms
    of a warm `monitor poll`'s imports), during the poll, and in the collections of interpreter
    shutdown (~0.2 s of CPU after a warm poll; bench/README.md, fourth round). Only in the command's
    own process: in a host (tests with CliRunner) frozen objects would never be collected."""
    if _own_process:
        gc.freeze()
        gc.enable()


def _collect_less_during_one_poll() -> None:
    """For the one poll of ``monitor poll``: the cyclic collector's youngest generation every
    50,000 allocations (not 700) and its full collections hardly ever. After ``gc.freeze`` the
    collector counts almost nothing as long-lived, so while a first poll builds up its results
    (22,000 entries, and with several stories ~30,000 analysed sentences of ~4 sets each, unpickled
    from the parse workers) it ran a full collection each time the heap grew by a quarter:
    ~0.5 s of a five-story first poll's main process (bench/README, sixth round). The command exits
    after the poll; what its few reference cycles hold is freed then. Not for ``monitor run``, whose
    memory must stay flat for weeks. Only in the command's own process (see above)."""
    if _own_process:
        gc.set_threshold(50_000, 20, 100)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", metavar="PATH", help="Config file (default: $MONITOR_CONFIG or ./feeds.yaml)."
)
@click.option(
    "--log-level",
    default=lambda: os.environ.get("MONITOR_LOG_LEVEL", "info"),
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    show_default="info or $MONITOR_LOG_LEVEL",
)
@click.option(
    "--log-format",
    default=lambda: os.environ.get("MONITOR_LOG_FORMAT", "text"),
    type=click.Choice(["text", "json"]),
    show_default="text or $MONITOR_LOG_FORMAT",
)
@click.version_option(package_name="story-monitor")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Follow a news story through German-language feeds and alert on new developments."""
    setup_logging(log_level, log_format)
    ctx.obj = State(config_path)


# --- run / poll --------------------------------------------------------------------------------


@cli.command()
@click.option("--node-id", default=None, help="Stable identity of this node (default: host name).")
@click.option(
    "--web", is_flag=True, help="Also serve the story desk (dashboard, API, Atom) from this process."
)
@click.option("--web-host", default=None, help="Desk address with --web (default: web.host, 127.0.0.1).")
@click.option(
    "--web-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Desk port with --web (default: web.port).",
)
@click.pass_obj
@handle_errors
def run(state: State, node_id: str | None, web: bool, web_host: str | None, web_port: int | None) -> None:
    """Run the daemon: poll every feed on its schedule until SIGINT/SIGTERM."""
    import anyio

    from monitor.memory import limit_malloc_arenas
    from monitor.scheduler import run_daemon

    limit_malloc_arenas()  # before any thread starts: a daemon's memory stays flat
    from monitor.store import redact

    config = state.config
    log.info("starting", extra={"config": config.source, "database": redact(config.database)})
    desk = None
    if web:
        from monitor.cli_web import desk_listener, desk_server

        listener, token = desk_listener(config, web_host, web_port)  # a port in use fails here, exit 1
        desk = (listener, desk_server(config, token, own_signals=False))
        log.info("serving the story desk", extra={"url": listener.url, "token": bool(token)})

    async def main() -> None:
        stop = anyio.Event()

        async def wait_for_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("signal received, stopping", extra={"signal": signal.Signals(signum).name})
                    stop.set()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_signal)
            if desk is not None:
                from monitor.cli_web import serve_desk_until

                tg.start_soon(serve_desk_until, desk[1], desk[0], stop)
            try:
                await run_daemon(config, node_id=node_id, stop=stop)
            finally:
                stop.set()  # the desk stops with the daemon, also when the daemon failed
            if desk is None:
                tg.cancel_scope.cancel()

    _freeze_long_lived_objects()
    try:
        run_async(main)  # handle_errors unwraps the task group's errors
    finally:
        if desk is not None:
            desk[0].close()


@cli.command()
@click.option("--feed", "feeds", multiple=True, metavar="NAME", help="Poll only this feed (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the per-feed report as JSON.")
@click.pass_obj
@handle_errors
def poll(state: State, feeds: tuple[str, ...], as_json: bool) -> None:
    """One pass over all feeds, then exit (0 even when some feeds failed: they are reported; 1 when a
    feed's poll failed inside the monitor)."""
    from monitor.pipeline import Monitor

    config = state.config
    names = list(feeds) or None
    if names:
        unknown = [n for n in names if n not in {f.name for f in config.feeds}]
        if unknown:
            _fail(f"unknown feed(s): {', '.join(unknown)}", EXIT_CONFIG)

    from monitor.terminal import is_terminal, poll_progress

    stopped_by: list[str] = []

    async def main() -> Any:
        import anyio

        async with Monitor(config) as monitor:
            _freeze_long_lived_objects()  # start-up is done: its imports, the config, the store
            _collect_less_during_one_poll()
            total = len(names or config.feeds)
            summary = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_signal, tg.cancel_scope, stopped_by)
                with poll_progress(total, enabled=not as_json and is_terminal()) as progress:
                    summary = await monitor.poll(names, progress=progress)
                if monitor.alert_channels:  # send what this poll (and earlier ones) put in the outbox
                    await monitor.deliver_pending(drain=True)
                tg.cancel_scope.cancel()
            return summary  # the parse workers are shut down on the way out (Monitor.close)

    summary = run_async(main)
    if stopped_by:
        _fail(
            f"stopped by {stopped_by[0]}: the feeds written until then are kept, the others were not polled",
            EXIT_RUNTIME,
        )
    if as_json:
        print_json(
            {
                "elapsed": round(summary.elapsed, 3),
                "feeds": [
                    {
                        "feed": r.feed,
                        "status": r.status,
                        "http_status": r.http_status,
                        "new": r.new,
                        "updated": r.updated,
                        "matched": r.matched,
                        "developments": r.developments,
                        "error": r.error,
                        "problems": r.problems,
                    }
                    for r in summary.reports
                ],
            }
        )
    else:
        click.echo(
            f"polled {len(summary.reports)} feeds in {summary.elapsed:.1f}s: "
            f"{summary.count('new')} new, {summary.count('updated')} updated, "
            f"{summary.count('matched')} matched, {summary.count('developments')} developments, "
            f"{len(summary.failed)} failed"
        )
        for report in summary.failed:
            click.echo(f"  failed: {report.feed}: {report.error}")
    for report in summary.failed:
        log.warning("feed failed", extra={"feed": report.feed, "error": report.error})
    if summary.crashed:  # not the server's failure but ours (a bug): the other feeds were polled
        names = ", ".join(r.feed for r in summary.crashed[:10]) + (
            ", ..." if len(summary.crashed) > 10 else ""
        )
        _fail(
            f"the poll of {len(summary.crashed)} feed(s) failed inside the monitor (logged): {names}",
            EXIT_RUNTIME,
        )


async def _cancel_on_signal(scope: Any, stopped_by: list[str]) -> None:
    """Cancel ``scope`` on the first SIGINT or SIGTERM and note which: `monitor poll` stops alike
    on both. The write running finishes (its transaction commits whole or rolls back), the feeds
    not written yet are not, and the parse workers are shut down; killed by SIGTERM's default
    action instead, the poll left them running. A second signal takes its default action (a stop
    that hangs can be forced)."""
    import threading

    import anyio

    if threading.current_thread() is not threading.main_thread():  # a host's thread (tests)
        return
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            log.info("signal received, stopping", extra={"signal": name})
            stopped_by.append(name)
            scope.cancel()
            return


# --- reading -----------------------------------------------------------------------------------


def _open_store(config: Config) -> Any:
    from monitor.store import Store

    store = Store(config.database)
    store.create_schema()
    return store


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--since: {value!r} is not an ISO 8601 date or time", EXIT_CONFIG)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@cli.command()
@click.option("--story", "story_id", metavar="ID", help="Only this story.")
@click.option("--since", metavar="ISO", help="Only items published at or after this time.")
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout.")
@click.pass_obj
@handle_errors
def items(state: State, story_id: str | None, since: str | None, as_json: bool) -> None:
    """Items that matched a story, newest first, with the terms that matched."""
    config = state.config
    _check_story(config, story_id)
    store = _open_store(config)
    rows = store.matched_items(story_id, _parse_since(since))
    if as_json:
        print_json(rows)
        return
    from monitor.terminal import items_table

    _console().print(items_table(rows, _local))
    click.echo(f"{len(rows)} items")


@cli.command()
@click.option("--story", "story_id", metavar="ID", help="Only this story.")
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout.")
@click.pass_obj
@handle_errors
def developments(state: State, story_id: str | None, as_json: bool) -> None:
    """Developments: new facts against the baseline and the story so far, with their sources."""
    config = state.config
    _check_story(config, story_id)
    store = _open_store(config)
    rows = store.developments(story_id)
    if as_json:
        print_json(rows)
        return
    from monitor.cli_story import load_baselines, render_developments

    baselines = load_baselines(config, [story_id] if story_id else None) if rows else {}
    render_developments(_console(), rows, baselines, _local)
    click.echo(f"{len(rows)} developments")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout.")
@click.pass_obj
@handle_errors
def feeds(state: State, as_json: bool) -> None:
    """Each feed's health: status, last success, last error, error streak, items, 304s, latency."""
    from monitor.cli_feeds import feed_rows, print_feeds

    config = state.config
    print_feeds(feed_rows(config, _open_store(config)), as_json)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _check_story(config: Config, story_id: str | None) -> None:
    if story_id is not None and story_id not in {s.id for s in config.stories}:
        known = ", ".join(s.id for s in config.stories) or "none configured"
        _fail(f"--story: unknown story {story_id!r} (known: {known})", EXIT_CONFIG)


from monitor.cli_match import match_command as _match_command  # noqa: E402 - `monitor match`

cli.add_command(_match_command)

from monitor.cli_db import db as _db_group  # noqa: E402 - registers `monitor db`

cli.add_command(_db_group)


from monitor.cli_web import register as _register_web  # noqa: E402 - serve, export, feeds import/export

_register_web(cli)
from monitor.cli_alerts import alerts as _alerts_group  # noqa: E402 - registers `monitor alerts`

cli.add_command(_alerts_group)

from monitor.cli_story import story_group as _story_group  # noqa: E402 - `monitor story show`

cli.add_command(_story_group)


def main() -> None:
    global _own_process
    _own_process = True
    # Start-up allocates objects that live until exit (imports, the config); the cyclic collector
    # is off while they are created and back on, with them frozen, once the command has read its
    # config (``_freeze_long_lived_objects``). At exit, the interpreter's last collections would
    # traverse every object still alive only to free memory the process is about to return anyway:
    # frozen first. What has cleanup to do (database connections, HTTP sessions, log handlers) is
    # closed explicitly before: the commands close what they open, logging flushes in its own
    # atexit hook.
    import atexit

    gc.disable()
    atexit.register(_freeze_long_lived_objects)
    cli(prog_name="monitor")


if __name__ == "__main__":
    main()
