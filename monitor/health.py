"""Feed health: what one poll means for a feed's state, its next poll and its "source down" alerts.

Pure: no network, no database. ``record_poll`` mutates the ``FeedState`` row the poll transaction
holds and returns the outbox rows to enqueue in the same transaction, so a poll's health, its items
and its alerts commit together or not at all.

Policy (documented in README "Fetching"):
- success resets the error streak; the next poll waits at least as long as the server asked
  (``Cache-Control: max-age``, ``Expires``, RSS ``<ttl>``), capped at ``fetch.max_backoff``, and
  never runs faster than the configured interval (the schedule sets the pace, these only slow it);
- a failure (timeout, connection, 404, 5xx, not a feed, too large, ...) backs off exponentially:
  ``max(interval, 60s) * 2^(streak-1)``, capped at ``fetch.max_backoff``, at least ``Retry-After``;
  the feed keeps being tried at that pace and recovers by itself when it answers again;
- 410 Gone disables the feed (the server says it was removed) and raises "source down" at once;
- a feed failing for longer than ``fetch.alert_after`` raises one "source down" alert per channel
  per failure episode, and one "source back" when it recovers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: a poll in which nothing changed loads neither parser nor ORM
    from monitor.fetch import FetchResult
    from monitor.parse import ParsedFeed
    from monitor.store.models import FeedState

log = logging.getLogger(__name__)

BACKOFF_MIN = 60.0  # seconds: the first back-off step for feeds polled more often than this
EMA_WEIGHT = 0.2


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    interval: float  # the feed's configured poll interval, seconds
    max_backoff: float  # fetch.max_backoff
    alert_after: float  # fetch.alert_after
    channels: Sequence[str] = ()  # alert channel names (Monitor.alert_channels)


@dataclass(slots=True)
class HealthUpdate:
    status: str  # ok | not_modified | unchanged | error
    error: str | None = None  # "kind: message"
    problems: list[str] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # for PollTransaction.enqueue
    moved_to: str | None = None  # the new URL after a permanent redirect
    disabled: bool = False  # this poll disabled the feed


def ema(previous: float | None, value: float, weight: float = EMA_WEIGHT) -> float:
    return value if previous is None else previous * (1 - weight) + value * weight


def classify(result: FetchResult, parsed: ParsedFeed | None) -> tuple[str | None, str | None]:
    """(error kind, message) of a poll, or (None, None) when it succeeded."""
    if result.error_kind is not None:
        return result.error_kind, result.error
    if parsed is not None and not parsed.is_feed:
        message = "the response is not a feed"
        if parsed.alternate_links:
            message += "; the page announces these feeds: " + ", ".join(parsed.alternate_links[:5])
        else:
            message += " (no feed links found on the page)"
        return "not_a_feed", message
    return None, None


def backoff_delay(error_streak: int, policy: HealthPolicy, retry_after: float | None = None) -> float:
    """Seconds to wait before the next poll of a feed that failed ``error_streak`` times in a row."""
    base = max(policy.interval, BACKOFF_MIN)
    delay = min(policy.max_backoff, base * 2 ** min(max(error_streak, 1) - 1, 30))
    if retry_after:
        delay = max(delay, min(retry_after, policy.max_backoff))
    return delay


def cache_delay(result: FetchResult, ttl: float | None, policy: HealthPolicy) -> float | None:
    """The server's lower bound on the next poll (max-age/Expires, <ttl>), capped; None if none."""
    # Finite and positive only: a bound read from a hostile feed or header must not break the poll.
    bounds = [b for b in (result.max_age, ttl, result.retry_after) if b and 0 < b < math.inf]
    if not bounds:
        return None
    return min(max(bounds), policy.max_backoff)


# How far ahead of this node's clock a bound written by a poll (its slot, its "not before") may lie
# and still count: the nodes' clocks differ a little; further ahead, the wall clock was set back
# since (an NTP step, a VM restored), and the bound would hold polling up until it caught up.
CLOCK_SLACK = 60.0


def is_due(state: FeedState, now: datetime, slack: float = 0.0, horizon: float | None = None) -> bool:
    """May a scheduled poll run now? ``slack`` absorbs schedule jitter so a bound equal to the
    interval does not skip a whole extra interval. ``horizon``: the longest bound a poll can set
    (``max_backoff``); a bound further ahead was set before the wall clock went back (an NTP step,
    a VM restored) and is no bound: without this the feed would wait for the clock to catch up."""
    after = state.next_poll_after
    if after is None or after - timedelta(seconds=slack) <= now:
        return True
    return horizon is not None and (after - now).total_seconds() > horizon + slack + CLOCK_SLACK


def episode_key(state: FeedState) -> str:
    """Identifies one failure episode of one feed (stable across re-runs of the same poll)."""
    since = state.failing_since
    stamp = since.strftime("%Y%m%dT%H%M%S%f") if since else "unknown"
    return f"{state.id}-{stamp}"


def _alert_rows(state: FeedState, kind: str, policy: HealthPolicy, now: datetime) -> list[dict[str, Any]]:
    since = state.failing_since or now
    payload = {
        "feed": state.name,
        "url": state.current_url,
        "error": (
            f"{state.last_error_kind}: {state.last_error}"
            if state.last_error_kind
            else (state.last_error or "")
        ),
        "since": since.isoformat().replace("+00:00", "Z"),
    }
    if state.disabled:
        payload["disabled"] = True
        payload["disabled_reason"] = state.disabled_reason
    if kind == "source_back":
        payload["back_at"] = now.isoformat().replace("+00:00", "Z")
    return [
        {
            "idempotency_key": f"{kind}-{episode_key(state)}-{channel}",
            "channel": channel,
            "kind": kind,
            "feed_id": state.id,
            "payload": payload,
        }
        for channel in policy.channels
    ]


def record_poll(
    state: FeedState,
    result: FetchResult,
    parsed: ParsedFeed | None,
    body_hash: str | None,
    policy: HealthPolicy,
    now: datetime,
) -> HealthUpdate:
    """Apply one poll's outcome to ``state``; return what the caller reports and enqueues."""
    state.last_polled_at = now
    state.polls_total = (state.polls_total or 0) + 1
    state.last_status = result.status
    state.latency_avg = ema(state.latency_avg, result.elapsed)
    error_kind, error = classify(result, parsed)
    if error_kind is None:
        return _success(state, result, parsed, body_hash, policy, now)
    return _failure(state, result, parsed, error_kind, error or "", policy, now)


def _success(
    state: FeedState,
    result: FetchResult,
    parsed: ParsedFeed | None,
    body_hash: str | None,
    policy: HealthPolicy,
    now: datetime,
) -> HealthUpdate:
    update = HealthUpdate(status="ok")
    if result.not_modified:
        state.polls_not_modified = (state.polls_not_modified or 0) + 1
        update.status = "not_modified"
    elif parsed is None:
        update.status = "unchanged"  # same bytes as last time: the server ignored our validators
    state.etag = result.etag or (state.etag if result.not_modified else None)
    state.last_modified = result.last_modified or (state.last_modified if result.not_modified else None)
    if body_hash:
        state.body_hash = body_hash
    if parsed is not None:
        state.feed_ttl = parsed.ttl_seconds
    if state.down_alerted:
        update.deliveries = _alert_rows(state, "source_back", policy, now)
        state.down_alerted = False
        log.warning(
            "feed is back",
            extra={"feed": state.name, "since": state.failing_since, "errors": state.error_streak},
        )
    state.last_success_at = now
    state.error_streak = 0
    state.failing_since = None
    state.last_error_kind = state.last_error = None
    delay = cache_delay(result, state.feed_ttl, policy)
    state.next_poll_after = now + timedelta(seconds=delay) if delay else None
    if result.permanent_redirect and result.permanent_redirect != state.current_url:
        log.warning(
            "feed moved permanently; following the new URL",
            extra={"feed": state.name, "old_url": state.current_url, "new_url": result.permanent_redirect},
        )
        state.current_url = result.permanent_redirect
        update.moved_to = result.permanent_redirect
    if parsed is not None:
        state.problems = list(parsed.problems[:20])
    update.problems = list(state.problems or [])
    return update


def _failure(
    state: FeedState,
    result: FetchResult,
    parsed: ParsedFeed | None,
    error_kind: str,
    error: str,
    policy: HealthPolicy,
    now: datetime,
) -> HealthUpdate:
    update = HealthUpdate(status="error", error=f"{error_kind}: {error}")
    state.error_streak = (state.error_streak or 0) + 1
    state.failing_since = state.failing_since or now
    state.last_error_kind = error_kind
    state.last_error = error[:2000]
    if result.status == 410:
        state.disabled = True
        state.disabled_reason = (
            f"the server answered 410 Gone on {now.date().isoformat()}: the feed was removed. "
            "Change its url in the config (or remove it) to poll it again."
        )
        update.disabled = True
        log.error("feed disabled: 410 Gone", extra={"feed": state.name, "url": state.current_url})
    delay = backoff_delay(state.error_streak, policy, result.retry_after)
    state.next_poll_after = now + timedelta(seconds=delay)
    failing_for = (now - state.failing_since).total_seconds()
    if not state.down_alerted and (state.disabled or failing_for >= policy.alert_after):
        update.deliveries = _alert_rows(state, "source_down", policy, now)
        state.down_alerted = True
        log.error(
            "source down",
            extra={"feed": state.name, "since": state.failing_since, "error": update.error},
        )
    if parsed is not None:
        state.problems = list(parsed.problems[:20])
    update.problems = list(state.problems or [])
    return update
