"""Read-side queries for feed health (``monitor feeds``): per-feed item rates."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from monitor.store.models import Item
from monitor.store.store import Store

RATE_WINDOW = timedelta(days=7)


def items_since(store: Store, since: datetime) -> dict[int, int]:
    """Items first seen at or after ``since``, per feed id."""
    with store.session() as session:
        rows = session.execute(
            select(Item.feed_id, func.count()).where(Item.first_seen >= since).group_by(Item.feed_id)
        ).all()
    return {int(feed_id): int(count) for feed_id, count in rows}
