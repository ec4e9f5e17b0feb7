"""``monitor feeds``: each feed's health as a table or JSON.

``feed_rows`` and ``print_feeds`` are plain functions so a ``feeds`` command group (with
``import``/``export`` subcommands) can call the listing without duplicating it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from monitor.config import Config
from monitor.store import Store
from monitor.store.feed_health import RATE_WINDOW, items_since


def feed_status(state: Any) -> str:
    """new | ok | failing | down | disabled (down: failing and "source down" was raised)."""
    if state.disabled:
        return "disabled"
    if state.error_streak:
        return "down" if state.down_alerted else "failing"
    return "ok" if state.last_success_at else "new"


def feed_rows(config: Config, store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    """Health of every configured feed; failing/disabled feeds first, then by name."""
    now = now or datetime.now(UTC)
    store.sync_feeds([(f.name, f.url) for f in config.feeds])
    configured = {f.name for f in config.feeds}
    recent = items_since(store, now - RATE_WINDOW)
    rows: list[dict[str, Any]] = []
    for s in store.feed_states():
        if s.name not in configured:
            continue
        polls = s.polls_total or 0
        # Items per day over the last 7 days, or over the feed's life when it is younger.
        age_days = max((now - s.created_at).total_seconds() / 86400, 1 / 24) if s.created_at else 1.0
        days = min(RATE_WINDOW.days, age_days)
        rows.append(
            {
                "name": s.name,
                "url": s.current_url,
                "configured_url": s.url,
                "status": feed_status(s),
                "last_polled": s.last_polled_at,
                "last_success": s.last_success_at,
                "last_status": s.last_status,
                "last_error_kind": s.last_error_kind,
                "last_error": s.last_error,
                "error_streak": s.error_streak,
                "failing_since": s.failing_since,
                "source_down_alerted": bool(s.down_alerted),
                "disabled_reason": s.disabled_reason,
                "items": s.items_total,
                "items_per_day": round(recent.get(s.id or 0, 0) / days, 2),
                "polls": polls,
                "not_modified_ratio": round((s.polls_not_modified or 0) / polls, 3) if polls else None,
                "latency_avg": round(s.latency_avg, 3) if s.latency_avg is not None else None,
                "next_poll_after": s.next_poll_after,
                "problems": list(s.problems or []),
            }
        )
    rows.sort(key=lambda r: (r["status"] not in ("down", "failing", "disabled"), r["name"]))
    return rows


def print_feeds(rows: list[dict[str, Any]], as_json: bool) -> None:
    from monitor.cli import _console, _local, print_json

    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table()
    columns = ("feed", "status", "last poll", "last success", "errors", "items", "/day", "304", "latency")
    for col in (*columns, "last error"):
        table.add_column(col)
    for r in rows:
        ratio = f"{r['not_modified_ratio']:.0%}" if r["not_modified_ratio"] is not None else "-"
        latency = f"{r['latency_avg']:.2f}s" if r["latency_avg"] is not None else "-"
        error = r["disabled_reason"] if r["status"] == "disabled" else r["last_error"]
        if error and r["last_error_kind"] and r["status"] != "disabled":
            error = f"{r['last_error_kind']}: {error}"
        table.add_row(
            r["name"],
            r["status"],
            _local(r["last_polled"]),
            _local(r["last_success"]),
            str(r["error_streak"]),
            str(r["items"]),
            f"{r['items_per_day']:g}",
            ratio,
            latency,
            (error or "")[:100],
        )
    _console().print(table)
    failing = sum(1 for r in rows if r["status"] in ("failing", "down", "disabled"))
    click.echo(f"{len(rows)} feeds, {failing} failing or disabled")
