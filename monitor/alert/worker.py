"""The outbox worker: claim due deliveries, send them, record the outcome, retry with backoff.

One ``Deliverer.run_once()`` pass:
1. for each digest channel whose period boundary has passed, gather its pending developments into
   one ``digest`` delivery (idempotency key ``digest-<channel>-<boundary>``; nothing when empty);
2. claim up to ``alerts.batch`` due deliveries (a committed claim with a lease, see
   ``monitor.store.outbox``);
3. send them, one channel after the other in creation order per channel, channels concurrently;
4. record each outcome: sent; failed (due again after an exponential backoff with jitter, at
   least the receiver's ``Retry-After``); dead (``retry.max_attempts`` or ``retry.max_age``
   reached, or a permanent refusal).

Test hook: ``MONITOR_TEST_CRASH_AT=before_send[:N]`` or ``after_send[:N]`` makes the process kill
itself with SIGKILL at that point of its N-th send (default the first). Read only here, only to
prove the crash guarantees in tests/test_alert_crash.py; never set it in production.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx

from monitor.alert.apprise_channel import AppriseSender
from monitor.alert.email import EmailSender
from monitor.alert.message import AlertMessage, DeliveryError, Renderer, SendResult, local_zone
from monitor.alert.webhook import WebhookSender
from monitor.config import AppriseConfig, Config, EmailConfig, RetryConfig, WebhookConfig
from monitor.store import Store
from monitor.store.models import utcnow
from monitor.store.outbox import ClaimedDelivery, Outbox

log = logging.getLogger(__name__)

CRASH_ENV = "MONITOR_TEST_CRASH_AT"
RETRY_AFTER_CAP = 24 * 3600.0


@dataclass(slots=True)
class DeliveryRunReport:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    digests: int = 0
    superseded: int = 0  # claimed, then taken over by another worker before the send: not sent here
    errors: list[str] = field(default_factory=list)


def digest_boundary(now: datetime, every: float) -> datetime:
    """The start of the digest period ``now`` is in: periods are aligned to the wall clock of the
    users' time zone (``MONITOR_TIMEZONE``, default Europe/Berlin), so a daily digest covers a local
    day and goes out at local midnight, not at 01:00 or 02:00 (UTC midnight), also on the days the
    clocks change (the wall clock is floored, then read in the zone again)."""
    zone = local_zone()
    wall = now.astimezone(zone).replace(tzinfo=UTC)  # the local wall clock, as if it were UTC
    start = datetime.fromtimestamp(math.floor(wall.timestamp() / every) * every, UTC)
    return start.replace(tzinfo=zone).astimezone(UTC)


def _budget_spent(claimed: ClaimedDelivery, retry: RetryConfig, now: datetime) -> str | None:
    """Why a delivery gets no further attempt ("too many attempts", "too old"), or None."""
    if claimed.attempts >= retry.max_attempts:
        return "too many attempts"
    if (now - claimed.created_at).total_seconds() >= retry.max_age:
        return "too old"
    return None


def backoff_seconds(
    retry: RetryConfig, attempts: int, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Wait after the ``attempts``-th failed attempt: ``backoff * 2**(attempts-1)`` capped at
    ``max_backoff``, times a random factor in [1-jitter, 1+jitter]; never less than Retry-After."""
    rng = rng or random
    base = min(retry.max_backoff, retry.backoff * 2 ** min(max(attempts - 1, 0), 30))
    wait = base * (1 + retry.jitter * (2 * rng.random() - 1))
    if retry_after is not None:
        wait = max(wait, min(retry_after, RETRY_AFTER_CAP))
    return max(wait, 0.0)


class _CrashHook:
    """See the module doc: ``MONITOR_TEST_CRASH_AT``."""

    def __init__(self) -> None:
        spec = os.environ.get(CRASH_ENV, "")
        point, _, nth = spec.partition(":")
        self.point = point or None
        self.nth = int(nth) if nth.isdigit() else 1
        self.count = 0

    def at(self, point: str) -> None:
        if self.point != point:
            return
        self.count += 1
        if self.count == self.nth:
            log.warning("test hook: killing the process", extra={"point": point})
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)


class Deliverer:
    """Sends the outbox. ``async with Deliverer(config, store) as d: await d.run_once()``."""

    def __init__(
        self,
        config: Config,
        store: Store,
        baselines: dict[str, str] | None = None,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self.config = config
        self.alerts = config.alerts
        self.outbox = Outbox(store)
        self.renderer = Renderer(baselines)
        self.story_titles = {s.id: s.title for s in config.stories}
        self._limiter = limiter or anyio.CapacityLimiter(1)
        self._lock = anyio.Lock()
        self._stranded_checked = False  # see _warn_stranded
        self._client: httpx.AsyncClient | None = None
        self._crash = _CrashHook()

    async def __aenter__(self) -> Deliverer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- channels -------------------------------------------------------------------------------

    @property
    def channels(self) -> dict[str, EmailConfig | WebhookConfig | AppriseConfig]:
        return self.alerts.channels()

    def retry_config(self, channel: str) -> RetryConfig:
        options = self.channels.get(channel)
        return (options.retry if options is not None else None) or self.alerts.retry

    def sender(self, channel: str) -> Any:
        options = self.channels[channel]
        if isinstance(options, EmailConfig):
            return EmailSender(channel, options, self.renderer)
        if isinstance(options, WebhookConfig):
            if self._client is None:
                self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
            user_agent = self.config.fetch.user_agent
            return WebhookSender(channel, options, self.renderer, self._client, user_agent)
        return AppriseSender(channel, options, self.renderer)

    def filter_reason(self, channel: str, story: str, score: float) -> str | None:
        options = self.channels[channel]
        if options.stories and story not in options.stories:
            return f"filtered: story {story} is not among the channel's stories"
        if options.min_score is not None and score < options.min_score:
            return f"filtered: score {score:.2f} is below the channel's min_score {options.min_score:.2f}"
        return None

    # -- one pass -------------------------------------------------------------------------------

    async def _db(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs), limiter=self._limiter)

    async def run_once(self, now: datetime | None = None, *, drain: bool = False) -> DeliveryRunReport:
        """One pass over the due deliveries (``drain``: repeat until nothing due is left)."""
        report = DeliveryRunReport()
        channels = self.channels
        if not channels:
            return report
        async with self._lock:
            if not self._stranded_checked:
                self._stranded_checked = True
                await self._warn_stranded()
            await self._build_digests(now or utcnow(), report)
            instant = [n for n, c in channels.items() if c.mode == "instant"]
            digest = [n for n, c in channels.items() if c.mode == "digest"]
            while True:
                lease = max(self.retry_config(n).lease for n in channels)
                claimed: list[ClaimedDelivery] = await self._db(
                    self.outbox.claim, instant, digest, lease=lease, limit=self.alerts.batch, now=now
                )
                report.claimed += len(claimed)
                await self.send_claimed(claimed, report)
                if not drain or len(claimed) < self.alerts.batch:
                    break
        return report

    async def _warn_stranded(self) -> None:
        """Once per process: alerts queued for channels the config no longer has (renamed, or an
        unnamed webhook whose URL changed) wait for a channel of that name; say so, and how."""
        stranded = await self._db(self.outbox.stranded, list(self.channels))
        if stranded:
            log.warning(
                "alerts are waiting for channels that are not configured; to send them, give a "
                "configured channel that name (e.g. `name: 3f2a9c1b` for webhook:3f2a9c1b)",
                extra={"channels": ", ".join(f"{c} ({n})" for c, n in sorted(stranded.items()))},
            )

    async def _build_digests(self, now: datetime, report: DeliveryRunReport) -> None:
        for name, options in self.channels.items():
            if options.mode != "digest":
                continue
            boundary = digest_boundary(now, options.digest_every)
            key = f"digest-{name}-{boundary:%Y%m%dT%H%M%SZ}"
            result = await self._db(
                self.outbox.build_digest,
                name,
                key,
                boundary,
                lambda story, score, name=name: self.filter_reason(name, story, score),
                now,
            )
            if result is not None:
                report.digests += 1
                report.skipped += result.skipped
                log.info("digest built", extra={"channel": name, "key": key, "developments": result.members})

    async def send_claimed(self, claimed: list[ClaimedDelivery], report: DeliveryRunReport) -> None:
        """Send claimed deliveries: the channels side by side, each channel's rows in order."""
        by_channel: dict[str, list[ClaimedDelivery]] = defaultdict(list)
        for c in claimed:
            by_channel[c.channel].append(c)
        async with anyio.create_task_group() as tg:
            for items in by_channel.values():
                tg.start_soon(self._send_channel, items, report)

    async def _send_channel(self, items: list[ClaimedDelivery], report: DeliveryRunReport) -> None:
        """In order; after a transient failure the channel's other claimed rows wait with it (the
        receiver is struggling or asked us to back off), so alerts keep their order."""
        for i, claimed in enumerate(items):
            retry_at = await self._deliver(claimed, report, waiting=items[i + 1 :])
            if retry_at is not None:
                await self._db(self.outbox.release, items[i + 1 :], retry_at)
                return

    async def _deliver(
        self, claimed: ClaimedDelivery, report: DeliveryRunReport, waiting: Sequence[ClaimedDelivery] = ()
    ) -> datetime | None:
        """Send one delivery and record the outcome; returns the retry time after a transient failure."""
        extra = {"channel": claimed.channel, "key": claimed.idempotency_key, "attempt": claimed.attempts}
        now = utcnow()
        retry = self.retry_config(claimed.channel)
        try:
            message = await self._db(self.message_for, claimed)
        except DeliveryError as exc:
            await self._db(self.outbox.finish, claimed, "dead", error=str(exc))
            report.dead += 1
            log.error("alert cannot be built; marked dead", extra={**extra, "error": str(exc)})
            return None
        if message is None:  # filtered out
            await self._skip(claimed, report)
            return None
        # The batch's rows were claimed together, with one lease: this row may have waited for the
        # sends before it. Renewed now, the lease covers this send alone (its timeout is shorter);
        # if it ran out and another worker claimed the row meanwhile, that worker sends it.
        if not await self._db(self.outbox.renew, claimed, lease=retry.lease, waiting=waiting):
            report.superseded += 1
            log.info("alert claimed by another worker meanwhile; not sent here", extra=extra)
            return None
        self._crash.at("before_send")
        try:
            with anyio.fail_after(self._send_timeout(claimed.channel)):
                result: SendResult = await self.sender(claimed.channel).send(message)
        except DeliveryError as exc:
            return await self._failed(claimed, exc, retry, now, report, extra)
        except TimeoutError:
            error = DeliveryError("the send did not finish in time")
            return await self._failed(claimed, error, retry, now, report, extra)
        except Exception as exc:  # a bug must not stop the other deliveries; the row is retried
            log.exception("unexpected error while sending an alert", extra=extra)
            error = DeliveryError(f"{type(exc).__name__}: {exc}")
            return await self._failed(claimed, error, retry, now, report, extra)
        self._crash.at("after_send")
        if result.retry_recipients:
            await self._partly_sent(claimed, result, retry, report, extra)
            return None  # the server is fine: the channel's other alerts need not wait
        await self._db(
            self.outbox.finish, claimed, "sent", status_code=result.status_code, error=result.refused or None
        )
        report.sent += 1
        log.info("alert sent", extra={**extra, "kind": claimed.kind})
        return None

    async def _partly_sent(
        self,
        claimed: ClaimedDelivery,
        result: SendResult,
        retry: RetryConfig,
        report: DeliveryRunReport,
        extra: dict[str, Any],
    ) -> None:
        """Email taken for some recipients, refused for now for others: retried for those alone
        (same Message-ID), with the backoff of a failed attempt; dead when the budget is spent."""
        left = {"recipients_left": list(result.retry_recipients)}
        why = _budget_spent(claimed, retry, utcnow())
        if why is not None:
            error = f"{result.refused} ({why})"
            await self._db(self.outbox.finish, claimed, "dead", error=error, payload=left)
            report.dead += 1
            log.error("alert delivery is dead for some recipients", extra={**extra, "error": error})
            return
        retry_at = utcnow() + timedelta(seconds=backoff_seconds(retry, claimed.attempts))
        await self._db(
            self.outbox.finish, claimed, "partial", error=result.refused, retry_at=retry_at, payload=left
        )
        report.failed += 1
        report.errors.append(result.refused)
        log.warning(
            "alert sent to some recipients; will retry the others", extra={**extra, "error": result.refused}
        )

    def _send_timeout(self, channel: str) -> float:
        options = self.channels[channel]
        timeout = getattr(options, "timeout", 60.0)
        # Generous, but inside the lease: no other worker takes the row over while this one sends.
        return min(timeout * 2 + 5, max(self.retry_config(channel).lease - 1, 1.0))

    async def _skip(self, claimed: ClaimedDelivery, report: DeliveryRunReport) -> None:
        dev = (await self._db(self.outbox.developments_by_id, [claimed.development_id or 0])).get(
            claimed.development_id or 0
        )
        reason = self.filter_reason(claimed.channel, dev["story"], dev["score"]) if dev else "filtered"
        await self._db(self.outbox.finish, claimed, "skipped", error=reason)
        report.skipped += 1

    async def _failed(
        self,
        claimed: ClaimedDelivery,
        exc: DeliveryError,
        retry: RetryConfig,
        now: datetime,
        report: DeliveryRunReport,
        extra: dict[str, Any],
    ) -> datetime | None:
        error = str(exc)
        why = "permanent failure" if exc.permanent else _budget_spent(claimed, retry, now)
        if why is not None:
            await self._db(
                self.outbox.finish, claimed, "dead", error=f"{error} ({why})", status_code=exc.status_code
            )
            report.dead += 1
            report.errors.append(error)
            log.error("alert delivery is dead", extra={**extra, "error": error, "why": why})
            return None
        wait = backoff_seconds(retry, claimed.attempts, exc.retry_after)
        # From the answer, not from the start of the attempt: a receiver that took 20 s to answer
        # "Retry-After: 30" means 30 s from now.
        retry_at = utcnow() + timedelta(seconds=wait)
        await self._db(
            self.outbox.finish, claimed, "failed", error=error, status_code=exc.status_code, retry_at=retry_at
        )
        report.failed += 1
        report.errors.append(error)
        log.warning(
            "alert delivery failed; will retry", extra={**extra, "error": error, "retry_in": round(wait, 1)}
        )
        return retry_at

    # -- building messages ----------------------------------------------------------------------

    def message_for(self, claimed: ClaimedDelivery) -> AlertMessage | None:
        """The message of a claimed delivery; None when the channel's filters exclude it."""
        base: dict[str, Any] = {
            "idempotency_key": claimed.idempotency_key,
            "channel": claimed.channel,
            "recipients": tuple(claimed.payload.get("recipients_left") or ()),
        }
        if claimed.kind == "development":
            devs = self.outbox.developments_by_id([claimed.development_id or 0])
            dev = devs.get(claimed.development_id or 0)
            if dev is None:
                raise DeliveryError(f"development {claimed.development_id} no longer exists", permanent=True)
            if self.filter_reason(claimed.channel, dev["story"], dev["score"]) is not None:
                return None
            return AlertMessage(
                kind="development", developments=[dev], story_titles=self.story_titles, **base
            )
        if claimed.kind == "digest":
            ids = [int(i) for i in claimed.payload.get("developments", [])]
            devs = self.outbox.developments_by_id(ids)
            ordered = [devs[i] for i in ids if i in devs]
            return AlertMessage(kind="digest", developments=ordered, story_titles=self.story_titles, **base)
        if claimed.kind in ("source_down", "source_back"):
            feed = {k: v for k, v in claimed.payload.items() if k != "recipients_left"}
            if not feed.get("feed"):
                name, url = self.outbox.feed_name(claimed.feed_id)
                feed.setdefault("feed", name)
                feed.setdefault("url", url)
            return AlertMessage(kind=claimed.kind, feed=feed, **base)
        raise DeliveryError(f"unknown delivery kind {claimed.kind!r}", permanent=True)

    # -- monitor alerts test --------------------------------------------------------------------

    def sample_message(self, channel: str) -> AlertMessage:
        story = self.config.stories[0] if self.config.stories else None
        story_id = story.id if story else "beispiel"
        now = utcnow()
        dev = {
            "id": 0,
            "story": story_id,
            "title": "Testmeldung: Gipfel in Budapest verschoben",
            "first_seen": now,
            "score": 1.0,
            "novel": ["Dies ist eine Testnachricht von story-monitor; so sieht eine echte Meldung aus."],
            "sources": [
                {
                    "url": "https://example.org/artikel",
                    "feed": "Beispielquelle",
                    "title": "Beispielartikel",
                    "published": now,
                }
            ],
        }
        return AlertMessage(
            kind="test",
            idempotency_key=f"test-{channel}-{now:%Y%m%dT%H%M%S%fZ}",
            channel=channel,
            developments=[dev],
            story_titles={**self.story_titles, story_id: story.title if story else "Beispiel"},
        )

    async def send_test(self, channel: str) -> SendResult:
        """Send a sample alert to one channel now (not through the outbox: never retried)."""
        return await self.sender(channel).send(self.sample_message(channel))


async def deliver_job() -> dict[str, Any]:
    """The scheduled task (APScheduler): one delivery pass through the running daemon's Monitor."""
    from monitor import scheduler

    monitor = scheduler._current_monitor
    if monitor is None or monitor.stopping:
        return {"status": "skipped"}
    report = await monitor.deliver_pending()
    return {"claimed": report.claimed, "sent": report.sent, "failed": report.failed, "dead": report.dead}
