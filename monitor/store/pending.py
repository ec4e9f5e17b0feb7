"""Read-only look-ups the pipeline makes before its write transaction (owned by the diff stage).

Full-text fetching is slow network I/O and must not happen inside the poll's write transaction:
the pipeline first asks which entries are new or changed, fetches what it needs, then writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from monitor.parse import Entry
from monitor.store.models import FeedState, Item
from monitor.store.store import Store


def changed_entry_ids(store: Store, feed_name: str, entries: Sequence[Entry]) -> dict[str, str]:
    """``{entry id: "new" | "updated"}`` for the entries not stored yet or whose content changed."""
    if not entries:
        return {}
    hashes = {e.entry_id: e.content_hash for e in entries}
    stored: dict[str, str] = {}
    ids = list(hashes)
    with store.session() as session:
        feed_id = session.scalars(select(FeedState.id).where(FeedState.name == feed_name)).first()
        if feed_id is None:
            return dict.fromkeys(ids, "new")
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = session.execute(
                select(Item.entry_id, Item.content_hash).where(
                    Item.feed_id == feed_id, Item.entry_id.in_(chunk)
                )
            )
            stored.update({row.entry_id: row.content_hash for row in rows})
    return {
        entry_id: ("new" if entry_id not in stored else "updated")
        for entry_id, h in hashes.items()
        if stored.get(entry_id) != h
    }
