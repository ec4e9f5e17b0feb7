"""SQLModel tables. Times are stored in UTC (naive columns hold UTC; see ``utc``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC on every database; always returns aware UTC datetimes.

    Why: SQLite keeps no zone and PostgreSQL's ``timestamp`` would shift aware values by the
    session zone; one explicit convention avoids both."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class FeedState(SQLModel, table=True):
    """What the monitor knows about one configured feed between polls (and its health)."""

    __tablename__ = "feed_state"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    url: str = Field(sa_column=Column(Text, nullable=False))  # as configured
    current_url: str = Field(sa_column=Column(Text, nullable=False))  # after permanent redirects
    etag: str | None = Field(default=None, sa_column=Column(Text))
    last_modified: str | None = Field(default=None, sa_column=Column(Text))
    body_hash: str | None = None  # of the last parsed body: skip parsing when a server ignores 304
    last_polled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_success_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status: int | None = None
    last_error_kind: str | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    error_streak: int = 0
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_poll_after: datetime | None = Field(
        default=None, sa_type=UTCDateTime
    )  # lower bound from backoff, Retry-After, max-age, ttl
    disabled: bool = False
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text))
    down_alerted: bool = False
    feed_ttl: float | None = None  # seconds, the feed's RSS <ttl> (kept across 304 answers)
    polls_total: int = 0
    polls_not_modified: int = 0
    # Scheduled fire time of the last committed scheduled poll: a re-run of the same or an older
    # slot (a crashed node's job, re-run by APScheduler after its lease expired) commits nothing.
    last_slot: datetime | None = Field(default=None, sa_type=UTCDateTime)
    latency_avg: float | None = None  # seconds, exponential moving average
    items_total: int = 0
    problems: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Item(SQLModel, table=True):
    """One entry of one feed. Unique per (feed, entry id); an updated entry updates this row."""

    __tablename__ = "item"
    __table_args__ = (UniqueConstraint("feed_id", "entry_id", name="uq_item_feed_entry"),)

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(foreign_key="feed_state.id", index=True)
    entry_id: str = Field(sa_column=Column(Text, nullable=False))
    url: str | None = Field(default=None, sa_column=Column(Text))
    title: str = Field(default="", sa_column=Column(Text, nullable=False))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    published: datetime = Field(index=True, sa_type=UTCDateTime)
    published_from_feed: bool = True
    content_hash: str
    first_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revision: int = 1
    previous_title: str | None = Field(default=None, sa_column=Column(Text))
    previous_text: str | None = Field(default=None, sa_column=Column(Text))
    fulltext: str | None = Field(default=None, sa_column=Column(Text))
    fulltext_status: str | None = None  # ok | failed: <why> | skipped

    @property
    def text(self) -> str:
        candidates = [self.fulltext or "", self.content, self.summary]
        return max(candidates, key=len)


class StoryMatch(SQLModel, table=True):
    """An item belongs to a story, with the evidence why."""

    __tablename__ = "story_match"
    __table_args__ = (UniqueConstraint("story_id", "item_id", name="uq_match_story_item"),)

    id: int | None = Field(default=None, primary_key=True)
    story_id: str = Field(index=True, max_length=64)
    item_id: int = Field(foreign_key="item.id", index=True)
    score: float = 0.0
    terms: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    evidence: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    matched_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Development(SQLModel, table=True):
    """A new fact in a story, grouped across the items (outlets) that report it."""

    __tablename__ = "development"
    __table_args__ = (UniqueConstraint("story_id", "key", name="uq_development_story_key"),)

    id: int | None = Field(default=None, primary_key=True)
    story_id: str = Field(index=True, max_length=64)
    key: str = Field(max_length=128)  # deterministic fingerprint: a re-run cannot create it twice
    title: str = Field(sa_column=Column(Text, nullable=False))
    first_seen: datetime = Field(default_factory=utcnow, index=True, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    score: float = 0.0
    novel: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    terms: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    update_of: int | None = Field(default=None, foreign_key="development.id")


class DevelopmentSource(SQLModel, table=True):
    """An item that reports a development, with the sentences it contributes."""

    __tablename__ = "development_source"
    __table_args__ = (UniqueConstraint("development_id", "item_id", name="uq_devsource_dev_item"),)

    id: int | None = Field(default=None, primary_key=True)
    development_id: int = Field(foreign_key="development.id", index=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    sentences: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    added_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Delivery(SQLModel, table=True):
    """Outbox row: one alert to one channel. Written in the transaction that creates its cause."""

    __tablename__ = "delivery"
    __table_args__ = (Index("ix_delivery_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=200)
    channel: str = Field(max_length=200)
    kind: str = Field(
        default="development", max_length=32
    )  # development | source_down | source_back | digest
    development_id: int | None = Field(default=None, foreign_key="development.id", index=True)
    feed_id: int | None = Field(default=None, foreign_key="feed_state.id")
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending | sending | sent | dead
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DeliveryAttempt(SQLModel, table=True):
    """One attempt to send one delivery. Written when the delivery is claimed (outcome empty) and
    completed when the send returns: an attempt left without an outcome was interrupted (crash),
    so whether the receiver got it is unknown."""

    __tablename__ = "delivery_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True)
    attempt: int
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # sent | failed | partial | dead | skipped | superseded | None: unknown (interrupted)
    outcome: str | None = Field(default=None, max_length=16)
    status_code: int | None = None  # HTTP status or SMTP reply code
    error: str | None = Field(default=None, sa_column=Column(Text))


class BaselineCopy(SQLModel, table=True):
    """The last text fetched for a ``baseline: {url: ...}``: a story keeps its baseline when the page
    cannot be fetched at a later start (the site is down, the network not up yet)."""

    __tablename__ = "baseline_copy"

    url_hash: str = Field(primary_key=True, max_length=64)  # sha256 of the URL (URLs can be long)
    url: str = Field(sa_column=Column(Text, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    fetched_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
