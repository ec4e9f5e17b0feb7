"""The SQLite fast lane (``monitor.store.lite``) reads and writes ``feed_state`` exactly as the full
store does, and steps aside whenever the full store has work to do first; new items on SQLite go
through the driver's executemany and are stored exactly as the Core insert stores them.

Real SQLite files, made by the full ``Store`` (migrations included); each check compares the lane
with the store on the same rows."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from monitor.parse import parse_feed
from monitor.store import FeedState, Store
from monitor.store.lite import (
    FEED_STATE_COLUMNS,
    NOT_MODIFIED_COLUMNS,
    LiteStore,
    sqlite_file,
)
from monitor.store.revisions import head_from_scripts
from monitor.store.store import PollTransaction
from tests.conftest import Project
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer

FEEDS = [
    ("a", "http://127.0.0.1:9/a.xml"),
    ("b", "http://127.0.0.1:9/b.xml"),
    ("c", "http://127.0.0.1:9/c.xml"),
]


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _make_db(path: Path) -> Store:
    store = Store(_url(path))
    store.create_schema()
    store.sync_feeds(FEEDS)
    # Every kind of value a row holds: datetimes with and without microseconds, None, bools, the
    # problems list, floats.
    with store.session() as session:
        a, b, _c = session.scalars(select(FeedState).order_by(FeedState.name)).all()
        a.etag, a.last_modified, a.body_hash = '"e1"', "Tue, 17 Nov 2026 10:00:00 GMT", "h" * 32
        a.last_polled_at = datetime(2026, 11, 17, 10, 0, 0, 123456, tzinfo=UTC)
        a.last_success_at = datetime(2026, 11, 17, 10, 0, 0, tzinfo=UTC)
        a.next_poll_after = datetime(2026, 11, 17, 10, 5, 0, 1, tzinfo=UTC)
        a.last_status, a.latency_avg, a.polls_total, a.polls_not_modified = 200, 0.0421, 7, 3
        a.problems = ["dates: 2 entries without a date", "äöü ß"]
        a.feed_ttl, a.items_total = 1800.0, 42
        b.disabled, b.disabled_reason = True, "410 Gone"
        b.error_streak, b.failing_since, b.last_error_kind = 4, datetime(2026, 11, 1, tzinfo=UTC), "http"
        b.last_error, b.down_alerted = "HTTP 503 from the server", True
        session.add_all([a, b])
        session.commit()
    return store


def _as_dict(state: Any) -> dict[str, Any]:
    return {c: getattr(state, c) for c in FEED_STATE_COLUMNS}


def test_the_lane_knows_every_column() -> None:
    # Fails when a column is added without telling the lane (see lite.py).
    assert tuple(FeedState.model_fields) == FEED_STATE_COLUMNS
    assert set(NOT_MODIFIED_COLUMNS) <= set(FEED_STATE_COLUMNS)


def test_feed_states_read_like_the_orm(tmp_path: Path) -> None:
    store = _make_db(tmp_path / "m.sqlite3")
    lite = LiteStore.open(_url(tmp_path / "m.sqlite3"), FEEDS)
    assert lite is not None
    try:
        assert [_as_dict(s) for s in lite.feed_states()] == [_as_dict(s) for s in store.feed_states()]
        a = lite.feed_states()[0]
        assert a.last_polled_at is not None and a.last_polled_at.tzinfo is UTC
        assert a.problems == ["dates: 2 entries without a date", "äöü ß"]
    finally:
        lite.close()
        store.close()


def _health_rows(states: list[Any]) -> list[dict[str, Any]]:
    """A 304's update for every feed, as Monitor._write_not_modified computes it."""
    when = datetime(2026, 11, 24, 8, 30, 0, 500, tzinfo=UTC)
    rows = []
    for i, state in enumerate(states):
        row = {c: getattr(state, c) for c in NOT_MODIFIED_COLUMNS}
        row.update(
            id=state.id,
            current_url=state.current_url,
            expect_polls_total=state.polls_total,
            last_polled_at=when,
            last_success_at=when,
            polls_total=state.polls_total + 1,
            polls_not_modified=state.polls_not_modified + 1,
            last_status=304,
            latency_avg=0.01 * (i + 1),
            next_poll_after=None if i else datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
            last_slot=datetime(2026, 11, 24, 8, 30, tzinfo=UTC),
        )
        rows.append(row)
    return rows


def test_write_not_modified_stores_the_same_bytes_as_the_store(tmp_path: Path) -> None:
    store = _make_db(tmp_path / "store.sqlite3")
    store.close()
    shutil.copy(tmp_path / "store.sqlite3", tmp_path / "lite.sqlite3")
    store = Store(_url(tmp_path / "store.sqlite3"))
    lite = LiteStore.open(_url(tmp_path / "lite.sqlite3"), FEEDS)
    assert lite is not None
    rows = _health_rows(store.feed_states())
    # a: written; b: disabled and alerted on, so not written by either; c: written.
    assert store.write_not_modified(rows) == {rows[1]["id"]}
    assert lite.write_not_modified(rows) == {rows[1]["id"]}
    lite.close()
    store.close()
    dumps = []
    for name in ("store.sqlite3", "lite.sqlite3"):
        with sqlite3.connect(tmp_path / name) as db:
            dumps.append(db.execute("SELECT * FROM feed_state ORDER BY id").fetchall())
    assert dumps[0] == dumps[1]
    # and the values read back through the ORM are the ones written
    store = Store(_url(tmp_path / "lite.sqlite3"))
    a = store.feed_state("a")
    assert a is not None
    assert (a.polls_total, a.last_status, a.last_polled_at) == (8, 304, rows[0]["last_polled_at"])
    assert a.next_poll_after == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    store.close()


def test_a_row_changed_since_it_was_read_is_skipped(tmp_path: Path) -> None:
    store = _make_db(tmp_path / "m.sqlite3")
    lite = LiteStore.open(_url(tmp_path / "m.sqlite3"), FEEDS)
    assert lite is not None
    a = lite.feed_states()[0]
    row = _health_rows([a])[0]
    stale = dict(row, expect_polls_total=a.polls_total + 1)  # polled by someone else meanwhile
    moved = dict(row, current_url="http://elsewhere/")
    assert lite.write_not_modified([stale]) == {a.id}
    assert lite.write_not_modified([moved]) == {a.id}
    after = store.feed_state("a")
    assert after is not None and after.polls_total == a.polls_total
    assert lite.write_not_modified([row]) == set()
    after = store.feed_state("a")
    assert after is not None and after.polls_total == a.polls_total + 1
    lite.close()
    store.close()


def test_a_failing_batch_writes_nothing(tmp_path: Path) -> None:
    store = _make_db(tmp_path / "m.sqlite3")
    lite = LiteStore.open(_url(tmp_path / "m.sqlite3"), FEEDS)
    assert lite is not None
    good, broken = _health_rows([s for s in lite.feed_states() if s.name in ("a", "c")])
    del broken["etag"]
    with pytest.raises(KeyError):
        lite.write_not_modified([good, broken])
    after = store.feed_state("a")
    assert after is not None and after.polls_total == 7  # the first row was rolled back
    assert lite.write_not_modified([good]) == set()  # and the connection is usable again
    lite.close()
    store.close()


def test_the_lane_steps_aside_when_the_full_store_has_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.sqlite3"
    assert LiteStore.open(_url(path), FEEDS) is None  # no database yet: the store creates it
    _make_db(path).close()
    lite = LiteStore.open(_url(path), FEEDS)
    assert lite is not None
    lite.close()
    assert LiteStore.open(_url(path), [*FEEDS, ("d", "http://127.0.0.1:9/d.xml")]) is None  # new feed
    assert LiteStore.open(_url(path), [("a", "http://127.0.0.1:9/moved.xml")]) is None  # URL changed
    assert LiteStore.open(_url(path), FEEDS[:1]) is not None  # fewer feeds: nothing to sync
    assert LiteStore.open("postgresql://127.0.0.1/test", FEEDS) is None
    assert LiteStore.open(f"sqlite:///{path}?timeout=5", FEEDS) is None
    # A newer version of the scripts (one more migration): the store migrates first.
    newer = tmp_path / "migrations"
    shutil.copytree(Path(__file__).resolve().parents[1] / "db" / "migrations", newer)
    head = head_from_scripts()
    (newer / "versions" / "9999_next.py").write_text(f'revision = "9999"\ndown_revision = "{head}"\n')
    monkeypatch.setenv("MONITOR_MIGRATIONS_DIR", str(newer))
    assert LiteStore.open(_url(path), FEEDS) is None
    monkeypatch.delenv("MONITOR_MIGRATIONS_DIR")
    lite = LiteStore.open(_url(path), FEEDS)
    assert lite is not None
    lite.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '0001'")
    assert LiteStore.open(_url(path), FEEDS) is None  # an older schema: the store migrates it


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///db/monitor.sqlite3", Path("db/monitor.sqlite3")),
        ("sqlite:////var/lib/monitor/m.sqlite3", Path("/var/lib/monitor/m.sqlite3")),
        ("sqlite+pysqlite:///m.sqlite3", Path("m.sqlite3")),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("sqlite:///file:m.sqlite3?mode=ro&uri=true", None),
        ("postgresql+psycopg://127.0.0.1/test", None),
    ],
)
def test_sqlite_file(url: str, expected: Path | None) -> None:
    assert sqlite_file(url) == expected


def test_a_poll_after_the_first_mixes_the_lane_and_the_store(tmp_path: Path) -> None:
    """Through the CLI: the second `monitor poll` opens an existing database (the lane), one feed
    answers 304 and one brings a new item (the full store loads for it)."""
    project = Project(tmp_path)
    first = [FakeEntry("a1", "Gipfel in Budapest geplant", "Trump und Putin wollen sich treffen.")]
    with FeedServer() as server:
        server.put("/a.xml", rss(first))
        server.put("/b.xml", rss(first))
        project.write({"feeds": [{"name": n, "url": server.url(f"/{n}.xml")} for n in ("a", "b")]})
        assert project.cli("poll").exit_code == 0
        second = [*first, FakeEntry("b2", "Neues aus Budapest", "Der Termin steht noch nicht fest.")]
        server.put("/b.xml", rss(second))
        result = project.cli("poll", "--json")
        assert result.exit_code == 0, result.stderr
        reports = {f["feed"]: f for f in result.json()["feeds"]}
        assert (reports["a"]["status"], reports["a"]["http_status"]) == ("not_modified", 304)
        assert (reports["b"]["status"], reports["b"]["new"]) == ("ok", 1)
    store = Store(f"sqlite:///{project.db_path}")
    a, b = store.feed_state("a"), store.feed_state("b")
    assert a is not None and b is not None
    assert (a.polls_total, a.polls_not_modified, b.polls_total, b.items_total) == (2, 1, 2, 2)
    store.close()


def _entries(feed: str) -> list[Any]:
    return parse_feed(
        feed.encode(), url="http://127.0.0.1:9/a.xml", fetched_at=datetime(2026, 11, 24, tzinfo=UTC)
    ).entries


def _upsert(store: Store, feed: str) -> list[tuple[int, str, str]]:
    with store.poll_transaction("a") as tx:
        return [(c.item_id, c.entry.entry_id, c.kind) for c in tx.upsert_entries(_entries(feed))]


def test_new_items_on_sqlite_are_stored_as_the_core_insert_stores_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dated = datetime(2025, 10, 17, 9, 30, 15, tzinfo=UTC)  # RFC 822: whole seconds
    first = [
        FakeEntry(
            "a1", "Gipfel in Budapest geplant", "Trump und Putin wollen sich treffen.", published=dated
        ),
        FakeEntry(
            "a2", "Selenskyj reist nach Washington", "Es geht um Tomahawk-Marschflugkörper."
        ),  # undated
        FakeEntry(
            "a3", "Orbán lädt ein", "Ungarn bietet sich als Gastgeber an.", link="https://example.org/ü"
        ),
    ]
    second = [
        first[0],
        FakeEntry(
            "a2", "Selenskyj reist nach Washington", "Das Treffen ist für Freitag angesetzt."
        ),  # changed
        first[2],
        FakeEntry(
            "a4", "Kreml bestätigt Vorbereitungen", "Ein Termin steht noch nicht fest.", published=dated
        ),
    ]
    results = {}
    for lane in ("core", "driver"):
        store = _make_db(tmp_path / f"{lane}.sqlite3")
        if lane == "core":  # the statement PostgreSQL uses, here on SQLite for the comparison
            monkeypatch.setattr(
                PollTransaction,
                "_insert_items_sqlite",
                lambda tx, rows, feed_was_empty: tx._insert_items(rows),
            )
        changed = [_upsert(store, rss(first)), _upsert(store, rss(second))]
        monkeypatch.undo()
        store.close()
        with sqlite3.connect(tmp_path / f"{lane}.sqlite3") as db:
            rows = db.execute("SELECT * FROM item ORDER BY id").fetchall()
            stamps = db.execute("SELECT first_seen, updated_at FROM item").fetchall()
            kept = [
                c
                for c in db.execute("SELECT * FROM item LIMIT 0").description
                if c[0] not in ("first_seen", "updated_at")
            ]
            names = [c[0] for c in db.execute("SELECT * FROM item LIMIT 0").description]
        keep = [names.index(c[0]) for c in kept]
        results[lane] = (changed, [tuple(row[i] for i in keep) for row in rows], stamps)
    assert results["driver"][0] == results["core"][0]  # the same ids, entries and kinds reported
    assert results["driver"][0][0] == [(1, "a1", "new"), (2, "a2", "new"), (3, "a3", "new")]
    assert [kind for _, _, kind in results["driver"][0][1]] == ["updated", "new"]
    assert results["driver"][1] == results["core"][1]  # byte-identical rows but for the clock
    for lane in ("core", "driver"):  # and the clock in the same format
        assert all(
            len(value) == len("2026-11-24 08:30:00.000500") for pair in results[lane][2] for value in pair
        )
    store = Store(_url(tmp_path / "driver.sqlite3"))
    with store.session() as session:
        from monitor.store import Item

        items = session.scalars(select(Item).order_by(Item.id)).all()
    assert items[0].published == dated and items[0].published_from_feed
    assert not items[1].published_from_feed and items[1].revision == 2
    assert items[0].first_seen.tzinfo is UTC
    store.close()


def test_matches_on_sqlite_are_stored_as_the_core_insert_stores_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Match rows written through the driver (SQLite) are the Core statement's rows, byte for byte
    but for the clock: JSON as SQLAlchemy's JSON type writes it (non-ASCII escaped), the same
    upsert when an item is matched again; the ORM reads them back as lists."""
    from monitor.store import MatchRecord, StoryMatch

    feed = [
        FakeEntry("m1", "Orbán lädt ein", "Gipfel in Budapest: Trump und Putin."),
        FakeEntry("m2", "Tomahawks", "Selenskyj wünscht sich „Marschflugkörper“."),
    ]
    results = {}
    for lane in ("core", "driver"):
        store = _make_db(tmp_path / f"{lane}.sqlite3")
        if lane == "core":  # the statement PostgreSQL uses, here on SQLite for the comparison
            monkeypatch.setattr(PollTransaction, "_add_matches_sqlite", PollTransaction._add_matches)
        with store.poll_transaction("a") as tx:
            ids = [c.item_id for c in tx.upsert_entries(_entries(rss(feed)))]
        for score, evidence in (
            (1.0, ("Gipfel in Budapest: Trump und Putin.",)),
            (2.5, ("Orbán lädt ein", "„Zitat“")),
        ):
            with store.poll_transaction("a") as tx:
                tx.add_matches(
                    [
                        MatchRecord("gipfel", ids[0], score, ("Budapest", "Orbán"), evidence),
                        MatchRecord("tomahawk", ids[1], 1.0, ("Marschflugkörper",), ("„Marschflugkörper“",)),
                    ]
                )
        monkeypatch.undo()
        store.close()
        with sqlite3.connect(tmp_path / f"{lane}.sqlite3") as db:
            rows = db.execute(
                "SELECT id, story_id, item_id, score, terms, evidence FROM story_match ORDER BY id"
            ).fetchall()
            stamps = [r[0] for r in db.execute("SELECT matched_at FROM story_match")]
        results[lane] = (rows, stamps)
    assert results["driver"][0] == results["core"][0]
    assert len(results["driver"][0]) == 2 and results["driver"][0][0][3] == 2.5  # upserted
    assert "\\u00e1" in results["driver"][0][0][4]  # "Orbán", escaped as json.dumps does
    for lane in ("core", "driver"):
        assert all(len(value) == len("2026-11-24 08:30:00.000500") for value in results[lane][1])
    store = Store(_url(tmp_path / "driver.sqlite3"))
    with store.session() as session:
        first = session.scalars(select(StoryMatch).order_by(StoryMatch.id)).first()
    assert first is not None and first.terms == ["Budapest", "Orbán"]
    assert first.evidence == ["Orbán lädt ein", "„Zitat“"]
    store.close()


def test_a_batch_knows_which_of_its_feeds_have_items_already(tmp_path: Path) -> None:
    """``PollBatch.preload`` finds, in one statement, which feeds have items; the transactions use
    that instead of a probe per feed, and get the same answers: a feed's first items all new, a
    known feed's changed entry an update and its unchanged ones nothing."""
    store = _make_db(tmp_path / "batch.sqlite3")
    first = [
        FakeEntry("a1", "Gipfel in Budapest", "Trump und Putin."),
        FakeEntry("a2", "Orbán", "Gastgeber."),
    ]
    _upsert(store, rss(first))  # feed "a" has items, "b" has none
    changed = [first[0], FakeEntry("a2", "Orbán", "Ungarn bietet sich als Gastgeber an.")]
    with store.poll_batch() as batch:
        batch.preload(["a", "b"])
        assert sorted(batch.has_items.values()) == [False, True]
        a, b = batch.poll("a"), batch.poll("b")
        got_a = [(c.entry.entry_id, c.kind) for c in a.upsert_entries(_entries(rss(changed)))]
        got_b = [(c.entry.entry_id, c.kind) for c in b.upsert_entries(_entries(rss(first)))]
        assert not batch.has_items  # each answer used once
    assert got_a == [("a2", "updated")]
    assert got_b == [("a1", "new"), ("a2", "new")]
    with store.session() as session:
        from monitor.store import Item

        assert len(session.scalars(select(Item)).all()) == 4
    store.close()
