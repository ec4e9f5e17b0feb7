"""Items that leave a story leave its developments: the store method and the whole poll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from monitor.parse import Entry, content_hash
from monitor.store import DevelopmentRecord, SourceRecord, Store
from monitor.store.models import Delivery, Development, DevelopmentSource
from tests import diff_texts as T
from tests.conftest import Project
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _entry(entry_id: str, title: str, text: str, published: datetime) -> Entry:
    return Entry(
        entry_id=entry_id,
        url=f"https://example.org/{entry_id}",
        title=title,
        summary=text,
        content="",
        published=published,
        published_from_feed=True,
        content_hash=content_hash(title, text, "", entry_id),
    )


def test_remove_development_sources_withdraws_a_development_left_without_sources(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'monitor.sqlite3'}")
    try:
        store.create_schema()
        store.sync_feeds([("kurier", "https://example.org/feed.xml")])
        with store.poll_transaction("kurier") as tx:
            changed = tx.upsert_entries(
                [
                    _entry("old", T.CANCELLATION_TITLE, T.CANCELLATION, T0 - timedelta(days=5)),
                    _entry("new", T.CANCELLATION_COPY_TITLE, T.CANCELLATION_COPY, T0),
                    _entry("other", T.SANCTIONS_TITLE, T.SANCTIONS, T0),
                ]
            )
            ids = {c.entry.entry_id: c.item_id for c in changed}

            def record(key: str, *items: str) -> DevelopmentRecord:
                return DevelopmentRecord(
                    "graz-gipfel",
                    key,
                    key,
                    1.0,
                    ["Satz."],
                    [],
                    [SourceRecord(ids[i], ["Satz."]) for i in items],
                    T0,
                )

            tx.add_development(record("d-cancel", "old", "new"), ["webhook:test"])
            tx.add_development(record("d-sanctions", "other"), ["webhook:test"])
        # Background: the old report is no longer a source; the development keeps its other source.
        with store.poll_transaction("kurier") as tx:
            assert tx.remove_development_sources("graz-gipfel", published_before=T0 - timedelta(days=1)) == []
        devs = {d["key"]: d for d in store.developments("graz-gipfel")}
        assert [s["url"] for s in devs["d-cancel"]["sources"]] == ["https://example.org/new"]
        # The only source of the sanctions development leaves the story: withdrawn, alert skipped.
        with store.poll_transaction("kurier") as tx:
            withdrawn = tx.remove_development_sources("graz-gipfel", [ids["other"]])
            assert len(withdrawn) == 1
            assert [k.key for k in tx.known_developments("graz-gipfel")] == ["d-cancel"]
        assert [d["key"] for d in store.developments("graz-gipfel")] == ["d-cancel"]
        assert store.developments("another-story") == []
        # the story's count (dashboard, /api/stories) is of the listed developments alone
        assert store.story_stats()["graz-gipfel"]["developments"] == 1
        with store.session() as session:
            statuses = {d.development_id: (d.status, d.last_error) for d in session.scalars(select(Delivery))}
        assert statuses[withdrawn[0]][0] == "skipped" and "withdrawn" in (statuses[withdrawn[0]][1] or "")
        assert [s for dev_id, (s, _) in statuses.items() if dev_id != withdrawn[0]] == ["pending"]
        # Another outlet reports the same news (same key): the development is back, and so is its
        # alert, which never went out.
        with store.poll_transaction("kurier") as tx:
            (again,) = tx.upsert_entries([_entry("copy", T.SANCTIONS_TITLE, T.SANCTIONS, T0)])
            ids["copy"] = again.item_id
            assert tx.add_development(record("d-sanctions", "copy"), ["webhook:test"]) == (
                withdrawn[0],
                False,
            )
        assert sorted(d["key"] for d in store.developments("graz-gipfel")) == ["d-cancel", "d-sanctions"]
        with store.session() as session:
            revived = session.scalars(select(Delivery).where(Delivery.development_id == withdrawn[0])).one()
        assert (revived.status, revived.last_error) == ("pending", None)
    finally:
        store.close()


def test_an_updated_item_that_no_longer_matches_leaves_its_development(
    project: Project, feed_server: FeedServer
) -> None:
    cancelled = FakeEntry(
        "k-1", T.CANCELLATION_TITLE, " ".join(T.CANCELLATION.split("\n")), "https://example.org/k-1", T0
    )
    feed_server.put("/kurier.xml", rss([cancelled]))
    project.write(
        {
            "fetch": {"interval": "1s", "jitter": "0s", "allow_private_addresses": True},
            "feeds": [{"name": "kurier", "url": feed_server.url("/kurier.xml")}],
            "stories": [T.STORY],
        }
    )
    assert project.cli("poll").exit_code == 0
    assert [d["title"] for d in project.cli("developments", "--json").json()] == [T.CANCELLATION_TITLE]

    # The outlet replaces the item (same id) with a text about something else entirely.
    replaced = FakeEntry(
        "k-1",
        "Korrektur: Wetterbericht für Nordstadt",
        "Für das Wochenende erwartet der Wetterdienst Sonne und milde Temperaturen im ganzen Land.",
        "https://example.org/k-1",
        T0,
    )
    feed_server.put("/kurier.xml", rss([replaced]))
    assert project.cli("poll").exit_code == 0
    assert project.cli("items", "--json").json() == []
    assert project.cli("developments", "--json").json() == []


def test_a_batch_sees_its_own_developments_as_a_fresh_read_would(tmp_path) -> None:
    """``known_developments`` is read once per batch transaction and kept current by the batch's
    own writes (PollBatch.known): after every write it equals what a fresh query returns."""
    store = Store(f"sqlite:///{tmp_path / 'monitor.sqlite3'}")
    try:
        store.create_schema()
        store.sync_feeds([("kurier", "https://example.org/a.xml"), ("bote", "https://example.org/b.xml")])
        with store.poll_batch() as batch:
            first, second = batch.poll("kurier"), batch.poll("bote")
            ids = {
                c.entry.entry_id: c.item_id
                for c in first.upsert_entries(
                    [
                        _entry("early", T.CANCELLATION_TITLE, T.CANCELLATION, T0 - timedelta(days=2)),
                        _entry("later", T.SANCTIONS_TITLE, T.SANCTIONS, T0),
                    ]
                )
            }

            def fresh() -> list:
                return store._known_developments(batch.session, "graz-gipfel")

            def record(key: str, first_seen: datetime, *items: str) -> DevelopmentRecord:
                sources = [SourceRecord(ids[i], ["Satz."]) for i in items]
                return DevelopmentRecord("graz-gipfel", key, key, 1.0, ["Satz."], [], sources, first_seen)

            assert first.known_developments("graz-gipfel") == [] == fresh()
            first.add_development(record("d-later", T0, "later"), [])
            # the other feed's transaction in the same batch sees it, in first-seen order
            second.add_development(record("d-early", T0 - timedelta(days=2), "early"), [])
            assert [d.key for d in second.known_developments("graz-gipfel")] == ["d-early", "d-later"]
            assert second.known_developments("graz-gipfel") == fresh()
            first.add_development(record("d-nosources", T0), [])  # no sources: not known
            assert first.known_developments("graz-gipfel") == fresh()
            second.remove_development_sources("graz-gipfel", [ids["later"]])
            assert [d.key for d in first.known_developments("graz-gipfel")] == ["d-early"]
            assert first.known_developments("graz-gipfel") == fresh()
            first.add_development(record("d-later", T0, "early"), [])  # sources again: known again
            assert [d.key for d in second.known_developments("graz-gipfel")] == ["d-early", "d-later"]
            assert second.known_developments("graz-gipfel") == fresh()
            # A source for a development the batch knows: the same id (from the cache), no new row,
            # the source stored, the development's updated_at moved (written once, when the batch
            # commits: PollBatch.flush), the cache still current.
            early = next(d for d in second.known_developments("graz-gipfel") if d.key == "d-early")
            touched_before = batch.session.execute(
                select(Development.updated_at).where(Development.id == early.id)
            ).scalar_one()
            added = second.add_development(record("d-early", T0, "later"), ["webhook:test"])
            assert added == (early.id, False)
            assert second.known_developments("graz-gipfel") == fresh()
            sources = batch.session.execute(
                select(DevelopmentSource.item_id).where(DevelopmentSource.development_id == early.id)
            ).scalars()
            assert sorted(sources) == sorted([ids["early"], ids["later"]])

            def updated_at() -> datetime:
                return batch.session.execute(
                    select(Development.updated_at).where(Development.id == early.id)
                ).scalar_one()

            assert updated_at() == touched_before and early.id in batch.touched
            assert batch.session.execute(select(Delivery)).first() is None  # no alert for a source
        # The batch committed: the touch was written with it.
        with store.session() as session:
            committed = session.execute(
                select(Development.updated_at).where(Development.id == early.id)
            ).scalar_one()
        assert committed > touched_before

        # A batch that fails writes nothing, its deferred touch included.
        with pytest.raises(RuntimeError), store.poll_batch() as batch:
            batch.poll("kurier").add_development(record("d-early", T0, "early"), [])
            assert early.id in batch.touched
            raise RuntimeError("the feed's write failed")
        with store.session() as session:
            after = session.execute(
                select(Development.updated_at).where(Development.id == early.id)
            ).scalar_one()
        assert after == committed
    finally:
        store.close()
