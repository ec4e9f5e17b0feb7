"""The alert outbox's SQL: claiming due deliveries, recording attempts and outcomes, digests.

Rows are written by ``PollTransaction.add_development`` / ``enqueue`` in the transaction that
creates their cause; everything after that happens here. States of a ``Delivery``:

    pending --claim--> sending --sent--> sent
       ^                  |   --failed (retry later)--> pending
       |                  |   --failed (too many attempts / too old / permanent)--> dead
       +--lease expired---+   (the worker died mid-send: taken up again)
    pending (development on a digest channel) --digest built--> digested
    pending (filtered out by min_score / stories) --> skipped
    dead --monitor alerts retry--> pending

A claim is a committed write (status ``sending``, ``next_attempt_at`` = end of the lease), so two
workers (threads, processes or nodes) never send the same row at the same time, and a worker that
dies leaves a row that another worker takes up once the lease has expired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, tuple_, update

from monitor.store.models import (
    Delivery,
    DeliveryAttempt,
    Development,
    FeedState,
    utcnow,
)
from monitor.store.store import Store, _insert_for, development_dicts

log = logging.getLogger(__name__)

FINAL_STATES = ("sent", "dead", "digested", "skipped")
_RENEW_CHUNK = 500  # rows per lease renewal statement (two bound parameters each)


@dataclass(slots=True)
class ClaimedDelivery:
    id: int
    idempotency_key: str
    channel: str
    kind: str
    development_id: int | None
    feed_id: int | None
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    attempt_id: int = 0


@dataclass(slots=True)
class DigestResult:
    key: str
    members: int
    skipped: int = 0


@dataclass(slots=True)
class DeliveryRow:
    """A delivery as ``monitor alerts list`` shows it."""

    id: int
    idempotency_key: str
    channel: str
    kind: str
    status: str
    attempts: int
    development_id: int | None
    feed_id: int | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    title: str | None = None
    unknown_outcomes: int = 0  # attempts interrupted before their outcome was recorded
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "channel": self.channel,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "development_id": self.development_id,
            "feed_id": self.feed_id,
            "title": self.title,
            "created_at": self.created_at,
            "next_attempt_at": self.next_attempt_at if self.status in ("pending", "sending") else None,
            "sent_at": self.sent_at,
            "last_error": self.last_error,
            "unknown_outcomes": self.unknown_outcomes,
        }


class Outbox:
    """SQL for the delivery worker and the ``monitor alerts`` commands. Synchronous; the worker
    calls it from a thread."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the worker -----------------------------------------------------------------------------

    def claim(
        self,
        instant_channels: Sequence[str],
        digest_channels: Sequence[str],
        *,
        lease: float,
        limit: int,
        now: datetime | None = None,
    ) -> list[ClaimedDelivery]:
        """Claim up to ``limit`` due deliveries (oldest first) for the given channels. On a digest
        channel only digests and source alerts are sent; its developments wait for the digest."""
        now = now or utcnow()
        if not instant_channels and not digest_channels:
            return []
        channel_filter = []
        if instant_channels:
            channel_filter.append(Delivery.channel.in_(list(instant_channels)))
        if digest_channels:
            channel_filter.append(
                and_(Delivery.channel.in_(list(digest_channels)), Delivery.kind != "development")
            )
        due = and_(
            Delivery.status.in_(("pending", "sending")),
            Delivery.next_attempt_at <= now,
            or_(*channel_filter),
        )
        with self.store.session() as session:
            stmt = select(Delivery).where(due).order_by(Delivery.id).limit(limit)
            if self.store.engine.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list(session.scalars(stmt))
            claimed: list[ClaimedDelivery] = []
            until = now + timedelta(seconds=lease)
            for row in rows:
                previous_attempts = row.attempts  # before the update below refreshes ``row``
                # Guarded update: if another worker claimed it in between, nothing changes here.
                result = session.execute(
                    update(Delivery)
                    .where(Delivery.id == row.id, due)
                    .values(status="sending", attempts=Delivery.attempts + 1, next_attempt_at=until)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != 1:
                    continue
                attempt = DeliveryAttempt(
                    delivery_id=row.id or 0, attempt=previous_attempts + 1, started_at=now
                )
                session.add(attempt)
                session.flush()
                claimed.append(
                    ClaimedDelivery(
                        id=row.id or 0,
                        idempotency_key=row.idempotency_key,
                        channel=row.channel,
                        kind=row.kind,
                        development_id=row.development_id,
                        feed_id=row.feed_id,
                        payload=dict(row.payload or {}),
                        attempts=previous_attempts + 1,
                        created_at=row.created_at,
                        attempt_id=attempt.id or 0,
                    )
                )
            session.commit()
            return claimed

    def renew(
        self,
        claimed: ClaimedDelivery,
        *,
        lease: float,
        now: datetime | None = None,
        waiting: Sequence[ClaimedDelivery] = (),
    ) -> bool:
        """Extend this claim's lease just before its send; False when the claim is no longer this
        worker's (its lease ran out while earlier rows of the batch were sent, and another worker
        claimed the row since): then the row must not be sent here, and this attempt is recorded
        as ``superseded``. A batch's rows share one lease from the claim, so without this a slow
        receiver could let a second pass send the later rows a second time."""
        now = now or utcnow()
        with self.store.session() as session:
            result = session.execute(
                update(Delivery)
                .where(_still_claimed(claimed))
                .values(next_attempt_at=now + timedelta(seconds=lease))
                .execution_options(synchronize_session=False)
            )
            held = result.rowcount == 1
            # The rows still waiting behind it keep the same lease: were this process to die now,
            # they would fall due together with it, and be claimed and sent again in their order.
            # One statement per chunk (not per row: a batch of N rows would cost N^2/2 statements).
            for start in range(0, len(waiting), _RENEW_CHUNK):
                chunk = waiting[start : start + _RENEW_CHUNK]
                session.execute(
                    update(Delivery)
                    .where(
                        Delivery.status == "sending",
                        tuple_(Delivery.id, Delivery.attempts).in_([(c.id, c.attempts) for c in chunk]),
                    )
                    .values(next_attempt_at=now + timedelta(seconds=lease))
                    .execution_options(synchronize_session=False)
                )
            if not held and claimed.attempt_id:
                session.execute(
                    update(DeliveryAttempt)
                    .where(DeliveryAttempt.id == claimed.attempt_id)
                    .values(
                        outcome="superseded",
                        finished_at=now,
                        error="not sent: claimed by another worker after this claim's lease ran out",
                    )
                )
            session.commit()
            return held

    def finish(
        self,
        claimed: ClaimedDelivery,
        outcome: str,
        *,
        error: str | None = None,
        status_code: int | None = None,
        retry_at: datetime | None = None,
        now: datetime | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Record the outcome of one attempt: ``sent``, ``failed`` (retry at ``retry_at``),
        ``partial`` (email taken for some recipients: retried for the others at ``retry_at``),
        ``dead`` or ``skipped`` (filtered out). ``payload``: keys to set in the delivery's payload
        (``recipients_left`` after a partial send)."""
        now = now or utcnow()
        status = {
            "sent": "sent",
            "failed": "pending",
            "partial": "pending",
            "dead": "dead",
            "skipped": "skipped",
        }[outcome]
        values: dict[str, Any] = {"status": status, "last_error": error}
        if outcome == "sent":
            values["sent_at"] = now
        if outcome in ("failed", "partial"):
            values["next_attempt_at"] = retry_at or now
        if payload:
            values["payload"] = {**claimed.payload, **payload}
        with self.store.session() as session:
            result = session.execute(update(Delivery).where(_still_claimed(claimed)).values(**values))
            if result.rowcount != 1:
                # Taken over by another worker (this claim's lease ran out): the outcome of this
                # attempt is recorded below, the row is the other claim's to finish.
                log.warning(
                    "a delivery's claim was taken over before its outcome was recorded",
                    extra={"key": claimed.idempotency_key, "attempt": claimed.attempts, "outcome": outcome},
                )
            if claimed.attempt_id:
                session.execute(
                    update(DeliveryAttempt)
                    .where(DeliveryAttempt.id == claimed.attempt_id)
                    .values(
                        outcome=outcome,
                        finished_at=now,
                        status_code=status_code,
                        error=error,
                    )
                )
            session.commit()

    def release(self, claimed: Sequence[ClaimedDelivery], retry_at: datetime) -> None:
        """Give back claimed deliveries that were not attempted (their channel just failed): due
        again at ``retry_at``, with the attempt not counted."""
        if not claimed:
            return
        with self.store.session() as session:
            for c in claimed:
                session.execute(
                    update(Delivery)
                    .where(_still_claimed(c))
                    .values(status="pending", attempts=Delivery.attempts - 1, next_attempt_at=retry_at)
                )
            session.execute(
                delete(DeliveryAttempt).where(DeliveryAttempt.id.in_([c.attempt_id for c in claimed]))
            )
            session.commit()

    def build_digest(
        self,
        channel: str,
        key: str,
        cutoff: datetime,
        accept: Callable[[str, float], str | None],
        now: datetime | None = None,
    ) -> DigestResult | None:
        """Gather the pending developments of a digest channel enqueued before ``cutoff`` into one
        ``digest`` delivery with the idempotency key ``key``. ``accept(story, score)`` returns None
        to include a development or the reason to skip it. Nothing is created when there is
        nothing to send, and a second call with the same key does nothing."""
        now = now or utcnow()
        with self.store.session() as session:
            if session.scalar(select(Delivery.id).where(Delivery.idempotency_key == key)) is not None:
                return None
            rows = session.execute(
                select(Delivery.id, Delivery.development_id, Development.story_id, Development.score)
                .join(Development, Development.id == Delivery.development_id)
                .where(
                    Delivery.channel == channel,
                    Delivery.kind == "development",
                    Delivery.status == "pending",
                    Delivery.created_at < cutoff,
                )
                .order_by(Development.first_seen, Delivery.id)
            ).all()
            members: list[tuple[int, int]] = []
            skipped = 0
            for delivery_id, dev_id, story_id, score in rows:
                reason = accept(story_id, score)
                if reason is None:
                    members.append((delivery_id, dev_id))
                else:
                    skipped += 1
                    session.execute(
                        update(Delivery)
                        .where(Delivery.id == delivery_id, Delivery.status == "pending")
                        .values(status="skipped", last_error=reason)
                    )
            if not members:
                session.commit()
                return None
            stmt = _insert_for(self.store.engine, Delivery).on_conflict_do_nothing(
                index_elements=["idempotency_key"]
            )
            inserted = session.execute(
                stmt.returning(Delivery.id),
                [
                    {
                        "idempotency_key": key,
                        "channel": channel,
                        "kind": "digest",
                        "payload": {
                            "members": [m[0] for m in members],
                            "developments": [m[1] for m in members],
                            "cutoff": cutoff.isoformat(),
                        },
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                ],
            ).scalar()
            if inserted is None:  # another worker built it at the same moment
                session.rollback()
                return None
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_([m[0] for m in members]), Delivery.status == "pending")
                .values(status="digested", last_error=None, sent_at=None)
            )
            session.commit()
            return DigestResult(key, len(members), skipped)

    # -- what the messages say ------------------------------------------------------------------

    def developments_by_id(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Developments with their sources, in the shape of ``monitor developments --json``."""
        ids = list(ids)
        if not ids:
            return {}
        with self.store.session() as session:
            devs = list(session.scalars(select(Development).where(Development.id.in_(ids))))
            return {d["id"] or 0: d for d in development_dicts(session, devs)}

    def feed_name(self, feed_id: int | None) -> tuple[str | None, str | None]:
        if feed_id is None:
            return None, None
        with self.store.session() as session:
            row = session.execute(
                select(FeedState.name, FeedState.current_url).where(FeedState.id == feed_id)
            ).first()
            return (row[0], row[1]) if row else (None, None)

    # -- the CLI --------------------------------------------------------------------------------

    def list(self, statuses: Sequence[str] | None = None, limit: int = 1000) -> list[DeliveryRow]:
        with self.store.session() as session:
            unknown = (
                select(DeliveryAttempt.delivery_id, func.count().label("n"))
                .where(DeliveryAttempt.outcome.is_(None))
                .group_by(DeliveryAttempt.delivery_id)
                .subquery()
            )
            stmt = (
                select(Delivery, Development.title, unknown.c.n)
                .outerjoin(Development, Development.id == Delivery.development_id)
                .outerjoin(unknown, unknown.c.delivery_id == Delivery.id)
                .order_by(Delivery.id.desc())
                .limit(limit)
            )
            if statuses:
                stmt = stmt.where(Delivery.status.in_(list(statuses)))
            out = []
            for d, title, n_unknown in session.execute(stmt):
                out.append(
                    DeliveryRow(
                        id=d.id or 0,
                        idempotency_key=d.idempotency_key,
                        channel=d.channel,
                        kind=d.kind,
                        status=d.status,
                        attempts=d.attempts,
                        development_id=d.development_id,
                        feed_id=d.feed_id,
                        created_at=d.created_at,
                        next_attempt_at=d.next_attempt_at,
                        sent_at=d.sent_at,
                        last_error=d.last_error,
                        title=title or (d.payload or {}).get("feed"),
                        unknown_outcomes=int(n_unknown or 0),
                    )
                )
            return out

    def get(self, delivery_id: int) -> Delivery | None:
        with self.store.session() as session:
            return session.get(Delivery, delivery_id)

    def retry(self, delivery_id: int, now: datetime | None = None) -> bool:
        """Make a dead (or waiting) delivery due now with a fresh attempt budget and age. A sent,
        digested or skipped delivery is left alone (returns False)."""
        now = now or utcnow()
        with self.store.session() as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.status.in_(("dead", "pending")))
                .values(status="pending", attempts=0, next_attempt_at=now, created_at=now)
            )
            session.commit()
            return result.rowcount == 1

    def stranded(self, configured: Sequence[str]) -> dict[str, int]:
        """Undelivered deliveries (pending or being sent) per channel that is not configured: no
        worker claims them until a channel of that name is configured again."""
        with self.store.session() as session:
            rows = session.execute(
                select(Delivery.channel, func.count())
                .where(Delivery.status.in_(("pending", "sending")), Delivery.channel.not_in(list(configured)))
                .group_by(Delivery.channel)
            ).all()
            return {channel: int(n) for channel, n in rows}

    def counts(self) -> dict[str, int]:
        with self.store.session() as session:
            return dict(
                session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
            )

    def attempts(self, delivery_id: int) -> list[DeliveryAttempt]:
        with self.store.session() as session:
            return list(
                session.scalars(
                    select(DeliveryAttempt)
                    .where(DeliveryAttempt.delivery_id == delivery_id)
                    .order_by(DeliveryAttempt.id)
                )
            )


def _still_claimed(claimed: ClaimedDelivery) -> Any:
    """The row is still in this claim: being sent, and no claim since (each claim counts an
    attempt, so the attempt count is the claim's fencing token)."""
    return and_(
        Delivery.id == claimed.id,
        Delivery.status == "sending",
        Delivery.attempts == claimed.attempts,
    )
