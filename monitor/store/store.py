"""The storage layer: the only place with SQL. Everything else gets plain data back.

A poll of one feed is one transaction (``Store.poll_transaction``): its entries, matches,
developments and outbox deliveries commit together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, delete, exists, false, func, or_, select, text, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from monitor.store.database import make_engine
from monitor.store.lite import NOT_MODIFIED_COLUMNS, to_db_datetime
from monitor.store.models import (
    Delivery,
    Development,
    DevelopmentSource,
    FeedState,
    Item,
    StoryMatch,
    utcnow,
)
from monitor.store.records import (
    ChangedItem,
    DevelopmentRecord,
    KnownDevelopment,
    MatchRecord,
)

if TYPE_CHECKING:
    from monitor.parse import Entry

log = logging.getLogger(__name__)


# Why a development's pending alerts were skipped when its last source left the story.
WITHDRAWN = "development withdrawn: its sources left the story"


class StoreError(Exception):
    """The database could not be used (unreachable, locked, full disk, ...)."""


ITEM_TABLE: Any = Item.__table__  # type: ignore[attr-defined]

# The columns a new item is inserted with (``PollTransaction.upsert_entries``).
ITEM_INSERT_COLUMNS = (
    "feed_id",
    "entry_id",
    "url",
    "title",
    "summary",
    "content",
    "published",
    "published_from_feed",
    "content_hash",
    "first_seen",
    "updated_at",
    "revision",
)
_SQLITE_ITEM_INSERT = (
    f"INSERT INTO item ({', '.join(ITEM_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ITEM_INSERT_COLUMNS)}) "
    "ON CONFLICT (feed_id, entry_id) DO NOTHING"
)


_SQLITE_MATCH_UPSERT = (
    "INSERT INTO story_match (story_id, item_id, score, terms, evidence, matched_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (story_id, item_id) DO UPDATE SET "
    "score = excluded.score, terms = excluded.terms, evidence = excluded.evidence"
)


def _has_sources() -> Any:
    """SQL condition: the development still has at least one source (it is not withdrawn)."""
    return exists().where(DevelopmentSource.development_id == Development.id)


def _url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _insert_for(engine: Engine, table: Any) -> Any:
    # The dialect modules are imported here, on first use: the PostgreSQL one costs ~20 ms of every
    # start-up, on SQLite for nothing (the engine has already loaded its own dialect).
    dialect = engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    raise StoreError(f"unsupported database dialect {dialect!r}")


def _utc_bound(value: datetime) -> datetime:
    """``value`` in UTC, for a comparison: a time whose UTC falls outside the years 1-9999
    (``0001-01-01T00:00+01:00``) is the earliest or the latest time there is (it raised
    OverflowError: an HTTP 500 for ``/api/items?since=``)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


class PollBatch:
    """The poll transactions of several feeds in one database transaction (``Store.poll_batch``)."""

    def __init__(self, store: Store, session: Session) -> None:
        self._store = store
        self.session = session
        # Per story, its developments as this transaction sees them (SQLite only: read once per
        # batch, kept current by add_development, dropped by whatever could change it otherwise).
        # On PostgreSQL every feed has its own batch and reads them under the story lock.
        self.known: dict[str, list[KnownDevelopment]] = {}
        self._states: dict[str, FeedState] = {}
        # Developments that got sources in this transaction -> their new ``updated_at``: written
        # once each, at commit (``flush``), not once per feed that adds a source (a first poll
        # touched the same few developments ~740 times, each a statement and a GIL round trip).
        self.touched: dict[int, datetime] = {}
        self.has_items: dict[int, bool] = {}  # feed id -> it had items when preloaded

    def flush(self) -> None:
        """What the batch's transactions deferred to the commit."""
        if self.touched:
            self.session.execute(
                self._store.statement("development_touch"),
                [{"b_id": dev_id, "v_updated_at": at} for dev_id, at in self.touched.items()],
            )
            self.touched.clear()

    def preload(self, feed_names: Sequence[str]) -> None:
        """Load the rows of the feeds this batch will poll with one query (not one per feed)."""
        stmt = select(FeedState).where(FeedState.name.in_(list(feed_names)))
        if self._store.engine.dialect.name == "postgresql":
            stmt = stmt.with_for_update()  # serialise re-runs of the same feed across nodes
        states = list(self.session.scalars(stmt))
        self._states.update((state.name, state) for state in states)
        # Which of them have items already: for a group commit one statement for the batch instead
        # of one probe per feed in upsert_entries. A single feed (PostgreSQL, a poll redone on its
        # own) keeps the probe, which runs only when the poll brought entries.
        ids = [state.id for state in states]
        if len(ids) > 1:
            with_items = exists().where(ITEM_TABLE.c.feed_id == FeedState.id)
            found = self.session.scalars(select(FeedState.id).where(FeedState.id.in_(ids), with_items))
            self.has_items.update((i, False) for i in ids)
            self.has_items.update((i, True) for i in found)

    def poll(self, feed_name: str) -> PollTransaction:
        if feed_name not in self._states:
            self.preload([feed_name])
        state = self._states.pop(feed_name, None)
        if state is None:
            raise StoreError(f"feed {feed_name!r} is not in the database (not configured?)")
        return PollTransaction(self._store, self.session, state, self)


class PollTransaction:
    """The writes of one feed poll. Obtained from ``Store.poll_transaction``; commits on exit."""

    def __init__(self, store: Store, session: Session, state: FeedState, batch: PollBatch) -> None:
        self._store = store
        self.session = session
        self.state = state
        self._known = batch.known
        self._batch = batch

    # -- entries ------------------------------------------------------------------------------

    def upsert_entries(self, entries: Sequence[Entry]) -> list[ChangedItem]:
        """Insert new entries, update changed ones (keeping the previous text); unchanged ones are
        left alone. Returns only the new and changed entries."""
        if not entries:
            return []
        session, feed_id = self.session, self.state.id
        assert feed_id is not None
        by_id = {e.entry_id: e for e in entries}
        # Core statements on the table, not the ORM entity: the ORM's bulk-insert and select
        # machinery was most of the cost of storing a first poll's 22,000 items (profiled).
        table = ITEM_TABLE
        c = table.c
        existing: dict[str, tuple[int, str, str, str, str]] = {}
        # A feed's first items (nothing stored for it yet) need no lookup: one indexed probe
        # instead of an IN list of every entry id (~5 % of a first poll's write time).
        preloaded = self._batch.has_items.pop(feed_id, None)
        if preloaded is not None:
            has_items = preloaded
        else:
            has_items = (
                session.execute(self._store.statement("feed_has_items"), {"feed_id": feed_id}).first()
                is not None
            )
        ids = list(by_id) if has_items else []
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            rows = session.execute(
                select(c.id, c.entry_id, c.content_hash, c.title, c.summary, c.content).where(
                    c.feed_id == feed_id, c.entry_id.in_(chunk)
                )
            )
            for row in rows:
                existing[row.entry_id] = (row.id, row.content_hash, row.title, row.summary, row.content)
        now = utcnow()
        new_rows: list[dict[str, Any]] = []
        changed: list[ChangedItem] = []
        for entry in entries:
            known = existing.get(entry.entry_id)
            if known is None:
                new_rows.append(
                    {
                        "feed_id": feed_id,
                        "entry_id": entry.entry_id,
                        "url": entry.url,
                        "title": entry.title,
                        "summary": entry.summary,
                        "content": entry.content,
                        "published": entry.published,
                        "published_from_feed": entry.published_from_feed,
                        "content_hash": entry.content_hash,
                        "first_seen": now,
                        "updated_at": now,
                        "revision": 1,
                    }
                )
            elif known[1] != entry.content_hash:
                item_id, _, old_title, old_summary, old_content = known
                old_text = old_content if len(old_content) > len(old_summary) else old_summary
                values: dict[str, Any] = {
                    "url": entry.url,
                    "title": entry.title,
                    "summary": entry.summary,
                    "content": entry.content,
                    "content_hash": entry.content_hash,
                    "updated_at": now,
                    "revision": c.revision + 1,
                    "previous_title": old_title,
                    "previous_text": old_text,
                }
                if entry.published_from_feed:
                    values["published"] = entry.published
                session.execute(update(table).where(c.id == item_id).values(**values))
                changed.append(ChangedItem(item_id, self.state.name, entry, "updated", old_title, old_text))
        if new_rows:
            if self._store.engine.dialect.name == "sqlite":
                inserted = self._insert_items_sqlite(new_rows, feed_was_empty=not has_items)
            else:
                inserted = self._insert_items(new_rows)
            for item_id, entry_id in inserted:
                changed.append(ChangedItem(item_id, self.state.name, by_id[entry_id], "new"))
            self.state.items_total = (self.state.items_total or 0) + len(new_rows)
        return changed

    def _insert_items(self, rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
        """Insert item rows (skipping any already there); (id, entry id) of those inserted."""
        c = ITEM_TABLE.c
        stmt = _insert_for(self._store.engine, ITEM_TABLE).on_conflict_do_nothing(
            index_elements=["feed_id", "entry_id"]
        )
        return [
            (row.id, row.entry_id) for row in self.session.execute(stmt.returning(c.id, c.entry_id), rows)
        ]

    def _sqlite_driver(self) -> sqlite3.Connection:
        """The sqlite3 connection under this transaction's session (same transaction)."""
        driver = self.session.connection().connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        return driver

    def _insert_items_sqlite(
        self, rows: list[dict[str, Any]], *, feed_was_empty: bool
    ) -> list[tuple[int, str]]:
        """``_insert_items`` on SQLite, through the driver's executemany in this transaction: the
        Core insert's per-value bind processing (three datetimes per row) was half of a first
        poll's item writes (22,000 rows). The values are stored as the Core insert stores them
        (tests/test_store_lite.py compares the rows). The ids come from one indexed query: all of
        the feed's rows when it had none (its first poll), else those of the inserted entry ids;
        one writer holds SQLite's lock for the transaction, so no other row can appear meanwhile."""
        texts: dict[datetime, str | None] = {}

        def stamp(value: datetime) -> str | None:  # first_seen and updated_at: one "now" per call
            text = texts.get(value)
            if text is None:
                text = texts[value] = to_db_datetime(value)
            return text

        values = [
            (
                row["feed_id"],
                row["entry_id"],
                row["url"],
                row["title"],
                row["summary"],
                row["content"],
                to_db_datetime(row["published"]),
                int(row["published_from_feed"]),
                row["content_hash"],
                stamp(row["first_seen"]),
                stamp(row["updated_at"]),
                row["revision"],
            )
            for row in rows
        ]
        driver = self._sqlite_driver()
        driver.executemany(_SQLITE_ITEM_INSERT, values)
        feed_id = self.state.id
        if feed_was_empty:
            found = driver.execute("SELECT id, entry_id FROM item WHERE feed_id = ? ORDER BY id", (feed_id,))
            return [(int(i), str(e)) for i, e in found]
        ids = list({row["entry_id"] for row in rows})
        inserted: list[tuple[int, str]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            found = driver.execute(
                f"SELECT id, entry_id FROM item WHERE feed_id = ? AND entry_id IN ({marks})",
                (feed_id, *chunk),
            )
            inserted += [(int(i), str(e)) for i, e in found]
        return sorted(inserted)  # in insertion order, as RETURNING gives them

    def set_fulltext(self, item_id: int, text: str | None, status: str) -> None:
        self.session.execute(
            update(Item).where(Item.id == item_id).values(fulltext=text, fulltext_status=status)
        )

    # -- matches --------------------------------------------------------------------------------

    def add_matches(self, matches: Iterable[MatchRecord]) -> None:
        if self._store.engine.dialect.name == "sqlite":
            self._add_matches_sqlite(matches)
        else:
            self._add_matches(matches)

    def _add_matches(self, matches: Iterable[MatchRecord]) -> None:
        now = utcnow()
        rows = [
            {
                "story_id": m.story_id,
                "item_id": m.item_id,
                "score": m.score,
                "terms": list(m.terms),
                "evidence": list(m.evidence),
                "matched_at": now,
            }
            for m in matches
        ]
        if not rows:
            return
        self.session.execute(self._store.statement("match_upsert"), rows)

    def _add_matches_sqlite(self, matches: Iterable[MatchRecord]) -> None:
        """``add_matches`` on SQLite through the driver's executemany in this transaction: the Core
        statement's per-value processing (two JSON columns and a datetime per row) was most of
        storing a first poll's matches (~7,500 rows with five stories). Stored as the Core insert
        stores them (``json.dumps``, as SQLAlchemy's JSON type; tests/test_store_lite.py compares)."""
        now = to_db_datetime(utcnow())
        values = [
            (m.story_id, m.item_id, m.score, json.dumps(list(m.terms)), json.dumps(list(m.evidence)), now)
            for m in matches
        ]
        if values:
            self._sqlite_driver().executemany(_SQLITE_MATCH_UPSERT, values)

    def remove_matches(self, item_ids: Iterable[int], story_id: str) -> None:
        """An updated item that no longer matches leaves the story."""
        ids = list(item_ids)
        if ids:
            self.session.execute(
                delete(StoryMatch).where(StoryMatch.story_id == story_id, StoryMatch.item_id.in_(ids))
            )

    def remove_matches_before(self, story_id: str, cutoff: datetime) -> int:
        """Items dated (by their feed) before ``cutoff`` are background, not coverage: they leave
        the story (the matcher learns when the story started only as coverage arrives)."""
        ids = select(Item.id).where(Item.published < cutoff, Item.published_from_feed.is_(True))
        result = self.session.execute(
            delete(StoryMatch).where(StoryMatch.story_id == story_id, StoryMatch.item_id.in_(ids))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- developments and the outbox -----------------------------------------------------------

    def remove_development_sources(
        self,
        story_id: str,
        item_ids: Iterable[int] = (),
        *,
        published_before: datetime | None = None,
    ) -> list[int]:
        """Items that left the story (an update that no longer matches; background once the story's
        start is known) are no longer sources of its developments. A development left without
        sources is withdrawn: listings skip it and its alerts not yet sent are skipped.
        Returns the ids of the developments withdrawn."""
        conditions = []
        ids = list(item_ids)
        if ids:
            conditions.append(DevelopmentSource.item_id.in_(ids))
        if published_before is not None:
            dated = select(Item.id).where(
                Item.published < published_before, Item.published_from_feed.is_(True)
            )
            conditions.append(DevelopmentSource.item_id.in_(dated))
        if not conditions:
            return []
        story_devs = select(Development.id).where(Development.story_id == story_id)
        affected = list(
            self.session.scalars(
                select(DevelopmentSource.development_id)
                .where(DevelopmentSource.development_id.in_(story_devs), or_(*conditions))
                .distinct()
            )
        )
        if not affected:
            return []
        self._known.pop(story_id, None)
        self.session.execute(
            delete(DevelopmentSource).where(DevelopmentSource.development_id.in_(affected), or_(*conditions))
        )
        still_sourced = select(DevelopmentSource.development_id).where(
            DevelopmentSource.development_id.in_(affected)
        )
        withdrawn = list(
            self.session.scalars(
                select(Development.id).where(
                    Development.id.in_(affected), Development.id.not_in(still_sourced)
                )
            )
        )
        if withdrawn:
            self.session.execute(
                update(Delivery)
                .where(Delivery.development_id.in_(withdrawn), Delivery.status == "pending")
                .values(status="skipped", last_error=WITHDRAWN)
            )
        return withdrawn

    def known_developments(self, story_id: str) -> list[KnownDevelopment]:
        """The story's developments so far. On PostgreSQL this first takes the story's lock until
        this transaction ends: nodes diffing items of one story at once would each miss the other's
        new development and create it twice (under different keys)."""
        if self._store.engine.dialect.name == "postgresql":
            from monitor.store.cluster import lock_key

            self.session.execute(
                text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("monitor.story", story_id)}
            )
        known = self._known.get(story_id)
        if known is None:
            known = self._known[story_id] = self._store._known_developments(self.session, story_id)
        return list(known)

    def add_development(self, record: DevelopmentRecord, channels: Sequence[str]) -> tuple[int, bool]:
        """Store a development (or add sources to the existing one with the same key) and, for a
        new development, one outbox delivery per channel, in this transaction.
        Returns (development id, created)."""
        session = self.session
        now = utcnow()
        known = self._known.get(record.story_id)
        # A development this transaction already knows (it has sources): its id is in the cache and
        # the insert below could only conflict, so skip it and the select of the id. Most calls of a
        # first poll add sources to an existing development (measured: 839 sources, 17 developments).
        cached = next((d for d in known if d.key == record.key), None) if known is not None else None
        if cached is not None:
            dev_id, created = cached.id, False
            self._touch(dev_id, now)
        else:
            dev_id, created = self._insert_development(record, now)
            if not created and record.sources:
                self._revive_alerts(dev_id, now)
            if record.sources and known is not None:  # known = has sources (_has_sources)
                if created:
                    known.append(
                        KnownDevelopment(
                            dev_id,
                            record.story_id,
                            record.key,
                            record.title,
                            list(record.novel),
                            list(record.terms),
                            record.first_seen,
                        )
                    )
                    known.sort(key=lambda d: (d.first_seen, d.id))  # as _known_developments orders them
                else:
                    # An existing development without sources (withdrawn) becomes known again:
                    # rare, read the story's developments afresh when next asked.
                    self._known.pop(record.story_id, None)
        if record.sources:
            session.execute(
                self._store.statement("source_insert"),
                [
                    {
                        "development_id": dev_id,
                        "item_id": s.item_id,
                        "sentences": list(s.sentences),
                        "added_at": now,
                    }
                    for s in record.sources
                ],
            )
        if created and channels:
            self.enqueue(
                [
                    {
                        "idempotency_key": f"dev-{record.story_id}-{record.key}-{channel}",
                        "channel": channel,
                        "kind": "development",
                        "development_id": dev_id,
                        "payload": {},
                    }
                    for channel in channels
                ]
            )
        return dev_id, created

    def _revive_alerts(self, dev_id: int, now: datetime) -> None:
        """A development withdrawn before its alerts went out (its sources left the story) has a
        source again: what it reports is news after all, so its skipped alerts are due again."""
        self.session.execute(
            update(Delivery)
            .where(
                Delivery.development_id == dev_id,
                Delivery.status == "skipped",
                Delivery.last_error == WITHDRAWN,
            )
            .values(status="pending", last_error=None, next_attempt_at=now)
        )

    def _touch(self, dev_id: int, now: datetime) -> None:
        """The development got a source now: its ``updated_at``, written at commit (PollBatch)."""
        self._batch.touched[dev_id] = now

    def _insert_development(self, record: DevelopmentRecord, now: datetime) -> tuple[int, bool]:
        """Insert the development, or find the existing one with its key: (id, created)."""
        session = self.session
        created_id = session.execute(
            self._store.statement("development_insert"),
            [
                {
                    "story_id": record.story_id,
                    "key": record.key,
                    "title": record.title,
                    "first_seen": record.first_seen,
                    "updated_at": now,
                    "score": record.score,
                    "novel": list(record.novel),
                    "terms": list(record.terms),
                    "update_of": record.update_of,
                }
            ],
        ).scalar()
        if created_id is not None:
            return int(created_id), True
        dev_id = session.execute(
            select(Development.id).where(
                Development.story_id == record.story_id, Development.key == record.key
            )
        ).scalar_one()
        self._touch(dev_id, now)
        return int(dev_id), False

    def enqueue(self, deliveries: Sequence[dict[str, Any]]) -> None:
        """Outbox rows; the idempotency key makes a re-run of the same poll enqueue nothing twice."""
        if not deliveries:
            return
        now = utcnow()
        rows = [
            {"status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now, **d}
            for d in deliveries
        ]
        stmt = _insert_for(self._store.engine, Delivery).on_conflict_do_nothing(
            index_elements=["idempotency_key"]
        )
        self.session.execute(stmt, rows)


class Store:
    """Database access for the monitor. Thread-safe: each call uses its own session."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._statements: dict[str, Any] = {}

    def statement(self, name: str) -> Any:
        """The upsert statements of the poll transaction, built once per store: building one (and
        its cache key) per feed and story was a tenth of a first poll's write time with 5 stories."""
        stmt = self._statements.get(name)
        if stmt is None:
            engine = self.engine
            if name == "match_upsert":
                # On the tables, not the ORM entities (here and below): the ORM's bulk-insert path
                # was most of the cost of these many small executemany calls (~85 us per match row).
                stmt = _insert_for(engine, StoryMatch.__table__)  # type: ignore[attr-defined]
                stmt = stmt.on_conflict_do_update(
                    index_elements=["story_id", "item_id"],
                    set_={
                        "score": stmt.excluded.score,
                        "terms": stmt.excluded.terms,
                        "evidence": stmt.excluded.evidence,
                    },
                )
            elif name == "development_insert":
                stmt = (
                    _insert_for(engine, Development)
                    .on_conflict_do_nothing(index_elements=["story_id", "key"])
                    .returning(Development.id)
                )
            elif name == "development_touch":
                table = Development.__table__  # type: ignore[attr-defined]
                stmt = (
                    update(table)
                    .where(table.c.id == bindparam("b_id"))
                    .values(updated_at=bindparam("v_updated_at"))
                )
            elif name == "feed_has_items":
                stmt = select(ITEM_TABLE.c.id).where(ITEM_TABLE.c.feed_id == bindparam("feed_id")).limit(1)
            elif name == "source_insert":
                table = DevelopmentSource.__table__  # type: ignore[attr-defined]
                stmt = _insert_for(engine, table).on_conflict_do_nothing(
                    index_elements=["development_id", "item_id"]
                )
            else:
                raise KeyError(name)
            self._statements[name] = stmt
        return stmt

    def create_schema(self) -> None:
        """Bring the schema up to date: the migrations, under a lock (monitor.store.migrate)."""
        from monitor.store.migrate import MigrationError, prepare_schema

        try:
            prepare_schema(self.engine)
        except OperationalError as exc:
            raise StoreError(f"cannot create the database schema: {exc.orig}") from exc
        except MigrationError as exc:
            raise StoreError(str(exc)) from exc

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    # -- feeds --------------------------------------------------------------------------------

    def sync_feeds(self, feeds: Iterable[tuple[str, str]]) -> None:
        """Make sure every configured (name, url) has a FeedState; a changed configured URL resets
        the feed's redirect target and validators."""
        with self.session() as session:
            # Names and URLs only, not FeedState objects: loading every feed's row into the ORM was
            # most of this method's time, and it runs at every start (~10 ms for 500 feeds).
            configured: dict[str, str] = dict(session.execute(select(FeedState.name, FeedState.url)).all())
            new_rows = []
            blank: dict[str, Any] | None = None  # a new feed's row: the model's defaults, made once
            for name, url in feeds:
                if name not in configured:
                    if blank is None:
                        blank = FeedState(name="", url="", current_url="", problems=[]).model_dump(
                            exclude={"id"}
                        )
                    new_rows.append({**blank, "name": name, "url": url, "current_url": url, "problems": []})
                elif configured[name] != url:
                    session.execute(
                        update(FeedState)
                        .where(FeedState.name == name)
                        .values(
                            url=url,
                            current_url=url,
                            etag=None,
                            last_modified=None,
                            body_hash=None,
                            disabled=False,
                            disabled_reason=None,
                            next_poll_after=None,
                        )
                    )
            if new_rows:  # several nodes may start at once: the first insert wins, the rest no-op
                stmt = _insert_for(self.engine, FeedState).on_conflict_do_nothing(index_elements=["name"])
                session.execute(stmt, new_rows)
            session.commit()

    def feed_state(self, name: str) -> FeedState | None:
        with self.session() as session:
            return session.scalars(select(FeedState).where(FeedState.name == name)).first()

    def feed_states(self) -> list[FeedState]:
        with self.session() as session:
            return list(session.scalars(select(FeedState).order_by(FeedState.name)))

    # Columns a 304 (or an unchanged body) may change: health counters and validators only.
    NOT_MODIFIED_COLUMNS = NOT_MODIFIED_COLUMNS

    def write_not_modified(self, rows: Sequence[dict[str, Any]]) -> set[int]:
        """Write the health updates of feeds whose poll brought nothing new, all in one transaction
        (one Core UPDATE per feed instead of one ORM transaction each).

        Each row holds ``id``, ``current_url``, ``expect_polls_total`` (the counter the values were
        computed from) and the ``NOT_MODIFIED_COLUMNS``. A row whose feed was polled, disabled or alerted on since
        (its counter moved) is not written: its id is returned, and the caller runs the feed's
        normal poll transaction instead.
        """
        if not rows:
            return set()
        table = FeedState.__table__  # type: ignore[attr-defined]
        stmt = (
            update(table)
            .where(
                table.c.id == bindparam("b_id"),
                table.c.polls_total == bindparam("b_expect"),
                table.c.current_url == bindparam("b_url"),
                table.c.disabled == false(),
                table.c.down_alerted == false(),
            )
            .values({c: bindparam(f"v_{c}") for c in self.NOT_MODIFIED_COLUMNS})
        )
        skipped: set[int] = set()
        with self.engine.begin() as conn:
            for row in rows:
                params = {f"v_{c}": row[c] for c in self.NOT_MODIFIED_COLUMNS}
                params["b_id"] = row["id"]
                params["b_expect"] = row["expect_polls_total"]
                params["b_url"] = row["current_url"]
                if conn.execute(stmt, params).rowcount != 1:
                    skipped.add(row["id"])
        return skipped

    @contextmanager
    def poll_transaction(self, feed_name: str) -> Iterator[PollTransaction]:
        """One transaction for one poll of one feed; rolled back on any exception."""
        with self.poll_batch() as batch:
            yield batch.poll(feed_name)

    @contextmanager
    def poll_batch(self) -> Iterator[PollBatch]:
        """One transaction for the polls of several feeds (``batch.poll(name)`` for each), committed
        together, rolled back together on any exception: group commit for SQLite's single writer,
        where a transaction per feed rewrote the same index pages once per feed (measured on a first
        poll of 500 feeds: ~45,000 WAL page writes) and paid a commit each."""
        with self.session() as session:
            try:
                if self.engine.dialect.name == "sqlite":
                    # The write lock up front, before the feed rows and existing items are read
                    # (PollBatch.preload, upsert_entries): SQLite's driver begins a transaction at
                    # the first write only, so those reads could predate another process's commit
                    # (a second `monitor poll`, the daemon) and overwrite it: a feed's counters
                    # lost, an update applied twice, a second "source down" alert. PostgreSQL
                    # locks the rows instead (FOR UPDATE in preload).
                    session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                # The feed rows (health counters, validators) change in every poll; the statements
                # of a poll never read them back, so they are flushed once, at commit, instead of
                # before every statement (autoflush: ~800 single-row UPDATEs for a first poll).
                with session.no_autoflush:
                    batch = PollBatch(self, session)
                    yield batch
                    batch.flush()
                session.commit()
            except BaseException:
                session.rollback()
                raise

    # -- reading ------------------------------------------------------------------------------

    def _known_developments(self, session: Session, story_id: str) -> list[KnownDevelopment]:
        rows = session.scalars(
            select(Development)
            .where(Development.story_id == story_id, _has_sources())
            .order_by(Development.first_seen, Development.id)
        )
        return [
            KnownDevelopment(
                d.id or 0, d.story_id, d.key, d.title, list(d.novel), list(d.terms), d.first_seen
            )
            for d in rows
        ]

    # -- baselines fetched from a URL ----------------------------------------------------------

    def save_baseline_copy(self, url: str, text: str) -> None:
        """Keep the text just fetched for a URL baseline (replacing an older copy)."""
        from monitor.store.models import BaselineCopy

        now = utcnow()
        row = {"url_hash": _url_hash(url), "url": url, "text": text, "fetched_at": now}
        stmt = _insert_for(self.engine, BaselineCopy).values(**row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["url_hash"], set_={"url": url, "text": text, "fetched_at": now}
        )
        with self.session() as session:
            session.execute(stmt)
            session.commit()

    def baseline_copy(self, url: str) -> tuple[str, datetime] | None:
        """The last text fetched for a URL baseline and when, or None."""
        from monitor.store.models import BaselineCopy

        with self.session() as session:
            row = session.get(BaselineCopy, _url_hash(url))
            return None if row is None else (row.text, row.fetched_at)

    def story_item_texts(self, story_id: str, limit: int = 400) -> list[tuple[datetime | None, str, str]]:
        """The newest items matched to a story as (published or None when undated, title, text),
        oldest first: what the matcher needs to rebuild its story state on start."""
        with self.session() as session:
            stmt = (
                select(Item)
                .join(StoryMatch, StoryMatch.item_id == Item.id)
                .where(StoryMatch.story_id == story_id)
                .order_by(Item.published.desc(), Item.id.desc())
                .limit(limit)
            )
            rows = [
                (item.published if item.published_from_feed else None, item.title, item.text)
                for item in session.scalars(stmt)
            ]
        return rows[::-1]

    def matched_items(
        self, story_id: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        with self.session() as session:
            stmt = (
                select(StoryMatch, Item, FeedState.name)
                .join(Item, Item.id == StoryMatch.item_id)
                .join(FeedState, FeedState.id == Item.feed_id)
                .order_by(Item.published.desc(), Item.id.desc())
            )
            if story_id:
                stmt = stmt.where(StoryMatch.story_id == story_id)
            if since:
                stmt = stmt.where(Item.published >= _utc_bound(since))
            if limit:
                stmt = stmt.limit(limit)
            out = []
            for match, item, feed_name in session.execute(stmt):
                out.append(
                    {
                        "story": match.story_id,
                        "item_id": item.id,
                        "url": item.url,
                        "title": item.title,
                        "feed": feed_name,
                        "published": item.published,
                        "first_seen": item.first_seen,
                        "matched": list(match.terms),
                        "score": match.score,
                        "evidence": list(match.evidence),
                    }
                )
            return out

    def developments(self, story_id: str | None = None) -> list[dict[str, Any]]:
        with self.session() as session:
            # Withdrawn developments (no source left, see remove_development_sources) are not listed.
            stmt = select(Development).where(_has_sources()).order_by(Development.first_seen, Development.id)
            if story_id:
                stmt = stmt.where(Development.story_id == story_id)
            return development_dicts(session, list(session.scalars(stmt)))

    def item_counts(self) -> dict[int, int]:
        with self.session() as session:
            return dict(session.execute(select(Item.feed_id, func.count()).group_by(Item.feed_id)).all())

    # -- dashboard (monitor/web) -------------------------------------------------------------

    def _bucket_expr(self, bucket: str) -> Any:
        """SQL for the start of the hour/day an item was published in (UTC), as text or timestamp."""
        if bucket not in ("hour", "day"):
            raise ValueError(f"bucket must be 'hour' or 'day', not {bucket!r}")
        if self.engine.dialect.name == "postgresql":
            return func.date_trunc(bucket, Item.published)
        fmt = "%Y-%m-%d %H:00:00" if bucket == "hour" else "%Y-%m-%d 00:00:00"
        return func.strftime(fmt, Item.published)

    def timeline(
        self, story_id: str, bucket: str = "hour", since: datetime | None = None
    ) -> list[tuple[datetime, str, int]]:
        """Matched items of a story per hour/day (by publication time, UTC) and outlet:
        ``[(bucket start, feed name, count), ...]`` in time order."""
        expr = self._bucket_expr(bucket).label("bucket")
        stmt = (
            select(expr, FeedState.name, func.count())
            .select_from(StoryMatch)
            .join(Item, Item.id == StoryMatch.item_id)
            .join(FeedState, FeedState.id == Item.feed_id)
            .where(StoryMatch.story_id == story_id)
            .group_by(expr, FeedState.name)
            .order_by(expr, FeedState.name)
        )
        if since is not None:
            stmt = stmt.where(Item.published >= since)
        out: list[tuple[datetime, str, int]] = []
        with self.session() as session:
            for start, feed, count in session.execute(stmt):
                if isinstance(start, str):
                    start = datetime.fromisoformat(start)
                out.append((start.replace(tzinfo=UTC) if start.tzinfo is None else start, feed, int(count)))
        return out

    def story_stats(self) -> dict[str, dict[str, Any]]:
        """Per story: matched items, outlets, first/last publication, developments, last development."""
        stats: dict[str, dict[str, Any]] = {}
        with self.session() as session:
            rows = session.execute(
                select(
                    StoryMatch.story_id,
                    func.count(),
                    func.count(func.distinct(Item.feed_id)),
                    func.min(Item.published),
                    func.max(Item.published),
                )
                .join(Item, Item.id == StoryMatch.item_id)
                .group_by(StoryMatch.story_id)
            )
            for story_id, items, outlets, first, last in rows:
                stats[story_id] = {
                    "items": int(items),
                    "outlets": int(outlets),
                    "first_item": _as_utc(first),
                    "last_item": _as_utc(last),
                    "developments": 0,
                    "last_development": None,
                }
            dev_rows = session.execute(  # withdrawn developments (no source left) are not listed
                select(Development.story_id, func.count(), func.max(Development.first_seen))
                .where(_has_sources())
                .group_by(Development.story_id)
            )
            empty = {"items": 0, "outlets": 0, "first_item": None, "last_item": None}
            for story_id, count, last in dev_rows:
                entry = stats.setdefault(story_id, dict(empty))
                entry["developments"] = int(count)
                entry["last_development"] = _as_utc(last)
        return stats


def _as_utc(value: Any) -> datetime | None:
    """Aggregates (min/max) bypass the column type on SQLite: normalise to aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def development_dicts(session: Session, devs: list[Development]) -> list[dict[str, Any]]:
    """Developments with their sources (oldest source first), in the shape of ``monitor
    developments --json``. The one query for it: the CLI, the web desk and the alert outbox use it."""
    sources: dict[int, list[dict[str, Any]]] = {d.id or 0: [] for d in devs}
    if devs:
        rows = session.execute(
            select(DevelopmentSource, Item, FeedState.name)
            .join(Item, Item.id == DevelopmentSource.item_id)
            .join(FeedState, FeedState.id == Item.feed_id)
            .where(DevelopmentSource.development_id.in_(list(sources)))
            .order_by(Item.published, Item.id)
        )
        for src, item, feed_name in rows:
            sources[src.development_id].append(
                {
                    "url": item.url,
                    "feed": feed_name,
                    "title": item.title,
                    "published": item.published,
                    "sentences": list(src.sentences),
                }
            )
    return [
        {
            "id": d.id,
            "story": d.story_id,
            "key": d.key,
            "title": d.title,
            "first_seen": d.first_seen,
            "updated_at": d.updated_at,
            "score": d.score,
            "novel": list(d.novel),
            "terms": list(d.terms),
            "update_of": d.update_of,
            "sources": sources.get(d.id or 0, []),
        }
        for d in devs
    ]
