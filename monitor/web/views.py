"""What the pages, the API and the exports show, as plain data from the store and the config.

Reads only; no SQL here (that lives in ``monitor.store``). Shared by the web app and the CLI
(``monitor export``) so both say the same thing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from monitor.baseline import BaselineError, load_baseline_text
from monitor.config import Config, StoryConfig
from monitor.links import safe_url as safe_url  # re-exported: the templates' filter
from monitor.store import Store


def display_zone() -> tzinfo:
    """Times are stored in UTC and shown in Europe/Berlin (``MONITOR_TIMEZONE`` to change)."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(os.environ.get("MONITOR_TIMEZONE", "Europe/Berlin"))
    except Exception:
        return UTC


@dataclass(frozen=True, slots=True)
class StoryInfo:
    id: str
    title: str
    configured: bool
    baseline_kind: str | None  # path | url | text | None
    baseline_url: str | None


def stories(config: Config, store: Store) -> list[dict[str, Any]]:
    """Configured stories (and stories still in the database but no longer configured)."""
    stats = store.story_stats()
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for story in config.stories:
        seen.add(story.id)
        out.append(_story_row(story.id, story.title, True, stats.get(story.id)))
    for story_id in sorted(set(stats) - seen):
        out.append(_story_row(story_id, story_id, False, stats[story_id]))
    return out


def _story_row(story_id: str, title: str, configured: bool, stat: dict[str, Any] | None) -> dict[str, Any]:
    stat = stat or {}
    return {
        "id": story_id,
        "title": title,
        "configured": configured,
        "items": stat.get("items", 0),
        "outlets": stat.get("outlets", 0),
        "developments": stat.get("developments", 0),
        "first_item": stat.get("first_item"),
        "last_item": stat.get("last_item"),
        "last_development": stat.get("last_development"),
    }


def story_config(config: Config, story_id: str) -> StoryConfig | None:
    for story in config.stories:
        if story.id == story_id:
            return story
    return None


def baseline(config: Config, story_id: str) -> dict[str, Any]:
    """The baseline as the page shows it: its text (path/text baselines) or its URL."""
    story = story_config(config, story_id)
    if story is None or story.baseline is None:
        return {"kind": None, "text": "", "url": None, "error": None}
    kind = "path" if story.baseline.path else ("url" if story.baseline.url else "text")
    try:
        text = load_baseline_text(config, story) or ""
        error = None
    except BaselineError as exc:
        text, error = "", str(exc)
    return {"kind": kind, "text": text, "url": story.baseline.url, "error": error}


def developments(store: Store, story_id: str, newest_first: bool = True) -> list[dict[str, Any]]:
    """Developments with their sources in publication order; the first source is marked."""
    devs = store.developments(story_id)
    for dev in devs:
        for i, src in enumerate(dev["sources"]):
            src["first"] = i == 0
    devs.sort(key=lambda d: (d["first_seen"], d["id"]), reverse=newest_first)
    return devs


def feed_health(config: Config, store: Store) -> list[dict[str, Any]]:
    """Each configured feed's health; failing and disabled feeds first, then by name."""
    configured = {f.name for f in config.feeds}
    rows = []
    for s in store.feed_states():
        if s.name not in configured:
            continue
        polls = s.polls_total or 0
        status = (
            "disabled"
            if s.disabled
            else ("failing" if s.error_streak else ("ok" if s.last_success_at else "new"))
        )
        rows.append(
            {
                "name": s.name,
                "url": s.current_url,
                "configured_url": s.url,
                "status": status,
                "last_polled": s.last_polled_at,
                "last_success": s.last_success_at,
                "last_status": s.last_status,
                "last_error_kind": s.last_error_kind,
                "last_error": s.last_error,
                "error_streak": s.error_streak or 0,
                "failing_since": s.failing_since,
                "disabled_reason": s.disabled_reason,
                "items": s.items_total or 0,
                "polls": polls,
                "not_modified_ratio": round((s.polls_not_modified or 0) / polls, 3) if polls else None,
                "latency_avg": round(s.latency_avg, 3) if s.latency_avg is not None else None,
            }
        )
    seen = {r["name"] for r in rows}
    for feed in config.feeds:  # configured but never polled: no state row yet
        if feed.name not in seen:
            rows.append(
                {
                    "name": feed.name,
                    "url": feed.url,
                    "configured_url": feed.url,
                    "status": "new",
                    **dict.fromkeys(
                        ("last_polled", "last_success", "last_status", "last_error_kind", "last_error"), None
                    ),
                    "error_streak": 0,
                    "failing_since": None,
                    "disabled_reason": None,
                    "items": 0,
                    "polls": 0,
                    "not_modified_ratio": None,
                    "latency_avg": None,
                }
            )
    order = {"down": 0, "disabled": 0, "failing": 0, "new": 1, "ok": 2}
    rows.sort(key=lambda r: (order[r["status"]], -r["error_streak"], r["name"]))
    return rows


def timeline(store: Store, story_id: str) -> list[tuple[datetime, str, int]]:
    """Hourly counts; the chart re-buckets them into local hours or days."""
    return store.timeline(story_id, "hour")
