"""``monitor alerts``: test the channels, inspect the outbox, retry dead deliveries, send now.

Exit codes as everywhere: 0 success, 1 runtime failure (a test alert or retry failed), 2 usage or
configuration error (unknown channel, no channels configured).
"""

from __future__ import annotations

from typing import Any

import click

from monitor.cli import (
    EXIT_CONFIG,
    EXIT_RUNTIME,
    State,
    _console,
    _fail,
    _local,
    _open_store,
    handle_errors,
    print_json,
    run_async,
)


@click.group()
def alerts() -> None:
    """Alert channels and the delivery outbox."""


def _channels(state: State) -> dict[str, Any]:
    channels = state.config.alerts.channels()
    if not channels:
        _fail("no alert channels are configured (alerts.email, alerts.webhooks, alerts.apprise)", EXIT_CONFIG)
    return channels


@alerts.command("test")
@click.argument("channel", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_obj
@handle_errors
def test_cmd(state: State, channel: str | None, as_json: bool) -> None:
    """Send a sample alert to CHANNEL (default: every channel) now and report the result.

    The sample goes straight to the channel, not through the outbox: it is never retried."""
    from monitor.alert import Deliverer, DeliveryError

    channels = _channels(state)
    if channel is not None and channel not in channels:
        _fail(f"unknown channel {channel!r} (configured: {', '.join(channels)})", EXIT_CONFIG)
    names = [channel] if channel else list(channels)
    store = _open_store(state.config)

    async def main() -> list[dict[str, Any]]:
        results = []
        async with Deliverer(state.config, store) as deliverer:
            for name in names:
                try:
                    result = await deliverer.send_test(name)
                    results.append(
                        {"channel": name, "ok": True, "status_code": result.status_code, "error": None}
                    )
                except DeliveryError as exc:
                    results.append(
                        {"channel": name, "ok": False, "status_code": exc.status_code, "error": str(exc)}
                    )
        return results

    results = run_async(main)
    if as_json:
        print_json(results)
    else:
        for r in results:
            if r["ok"]:
                code = f" ({r['status_code']})" if r["status_code"] else ""
                click.echo(f"{r['channel']}: sent{code}")
            else:
                click.echo(f"{r['channel']}: FAILED: {r['error']}")
    if not all(r["ok"] for r in results):
        raise SystemExit(EXIT_RUNTIME)


@alerts.command("list")
@click.option(
    "--pending", "which", flag_value="pending", help="Only deliveries still to send (pending or sending)."
)
@click.option("--dead", "which", flag_value="dead", help="Only deliveries that gave up.")
@click.option(
    "--limit",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),  # SQLite reads LIMIT -5 as no limit at all
    help="At most this many, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON array on stdout.")
@click.pass_obj
@handle_errors
def list_cmd(state: State, which: str | None, limit: int, as_json: bool) -> None:
    """Deliveries in the outbox, newest first, with their status, attempts and last error."""
    from monitor.store.outbox import Outbox

    statuses = {"pending": ["pending", "sending"], "dead": ["dead"]}.get(which or "")
    rows = Outbox(_open_store(state.config)).list(statuses, limit=limit)
    configured = set(state.config.alerts.channels())
    if as_json:
        print_json([{**r.as_dict(), "channel_configured": r.channel in configured} for r in rows])
        return
    from rich.table import Table

    table = Table()
    for col in ("id", "status", "channel", "kind", "tries", "created", "next/sent", "about", "last error"):
        table.add_column(col)
    for r in rows:
        when = (
            r.sent_at
            if r.status == "sent"
            else (r.next_attempt_at if r.status in ("pending", "sending") else None)
        )
        channel = r.channel if r.channel in configured else f"{r.channel} (not configured)"
        table.add_row(
            str(r.id),
            r.status + (" ?" if r.unknown_outcomes else ""),
            channel,
            r.kind,
            str(r.attempts),
            _local(r.created_at),
            _local(when),
            (r.title or "")[:60],
            (r.last_error or "")[:80],
        )
    _console().print(table)
    click.echo(f"{len(rows)} deliveries")


@alerts.command("retry")
@click.argument("delivery_id", type=int)
@click.pass_obj
@handle_errors
def retry_cmd(state: State, delivery_id: int) -> None:
    """Send delivery ID again: a dead (or waiting) delivery becomes due now with a fresh budget."""
    from monitor.store.outbox import Outbox

    outbox = Outbox(_open_store(state.config))
    row = outbox.get(delivery_id)
    if row is None:
        _fail(f"no delivery with id {delivery_id}", EXIT_RUNTIME)
    if not outbox.retry(delivery_id):
        _fail(
            f"delivery {delivery_id} is {row.status}: only dead or pending deliveries can be retried",
            EXIT_RUNTIME,
        )
    click.echo(
        f"delivery {delivery_id} ({row.channel}) is due now; the daemon (or `monitor alerts deliver`) sends it"
    )


@alerts.command("deliver")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
@handle_errors
def deliver_cmd(state: State, as_json: bool) -> None:
    """Send every due delivery now, once (what the daemon does every alerts.deliver_every)."""
    from monitor.pipeline import Monitor

    _channels(state)

    async def main() -> Any:
        async with Monitor(state.config) as monitor:
            return await monitor.deliver_pending(drain=True)

    report = run_async(main)
    data = {
        "claimed": report.claimed,
        "sent": report.sent,
        "failed": report.failed,
        "dead": report.dead,
        "skipped": report.skipped,
        "digests": report.digests,
    }
    if as_json:
        print_json(data)
    else:
        click.echo(", ".join(f"{v} {k}" for k, v in data.items()))
    if report.failed or report.dead:
        raise SystemExit(EXIT_RUNTIME)
