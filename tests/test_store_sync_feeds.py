"""``Store.sync_feeds``: the configured feeds get their rows; a feed whose configured URL changed
starts over (redirect target, validators, body hash, disabled state); other feeds are left alone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from monitor.store import FeedState, Store


def _polled(store: Store, name: str) -> None:
    """What polls leave in a row: validators, a moved URL, a body hash, a disabled feed."""
    with store.session() as session:
        session.execute(
            update(FeedState)
            .where(FeedState.name == name)
            .values(
                current_url=f"https://moved.example/{name}.xml",
                etag='"v1"',
                last_modified="Mon, 24 Nov 2025 10:00:00 GMT",
                body_hash="abc",
                disabled=True,
                disabled_reason="gone (410)",
                polls_total=7,
            )
        )
        session.commit()


def _state(store: Store, name: str) -> FeedState:
    state = store.feed_state(name)
    assert state is not None
    return state


def test_a_changed_url_resets_the_feed_and_nothing_else(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'monitor.sqlite3'}")
    store.create_schema()
    try:
        store.sync_feeds([("a", "https://example.org/a.xml"), ("b", "https://example.org/b.xml")])
        assert [(s.name, s.url, s.current_url) for s in store.feed_states()] == [
            ("a", "https://example.org/a.xml", "https://example.org/a.xml"),
            ("b", "https://example.org/b.xml", "https://example.org/b.xml"),
        ]
        _polled(store, "a")
        _polled(store, "b")

        store.sync_feeds(
            [
                ("a", "https://example.org/a-new.xml"),
                ("b", "https://example.org/b.xml"),
                ("c", "https://example.org/c.xml"),
            ]
        )

        a = _state(store, "a")
        assert (a.url, a.current_url) == ("https://example.org/a-new.xml", "https://example.org/a-new.xml")
        assert (a.etag, a.last_modified, a.body_hash) == (None, None, None)
        assert (a.disabled, a.disabled_reason, a.next_poll_after) == (False, None, None)
        assert a.polls_total == 7  # its history stays
        b = _state(store, "b")  # same URL: untouched
        assert (b.url, b.current_url) == ("https://example.org/b.xml", "https://moved.example/b.xml")
        assert (b.etag, b.body_hash, b.disabled, b.disabled_reason) == ('"v1"', "abc", True, "gone (410)")
        c = _state(store, "c")
        assert (c.url, c.current_url, c.etag, c.problems) == (
            "https://example.org/c.xml",
            "https://example.org/c.xml",
            None,
            [],
        )
    finally:
        store.close()
