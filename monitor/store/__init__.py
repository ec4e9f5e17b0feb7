"""Storage: SQLModel tables and the ``Store`` (the only module with SQL)."""

from monitor.store.database import is_sqlite, make_engine, normalise_url, redact
from monitor.store.models import Delivery, Development, DevelopmentSource, FeedState, Item, StoryMatch
from monitor.store.store import (
    ChangedItem,
    DevelopmentRecord,
    KnownDevelopment,
    MatchRecord,
    PollTransaction,
    SourceRecord,
    Store,
    StoreError,
)

__all__ = [
    "ChangedItem",
    "Delivery",
    "Development",
    "DevelopmentRecord",
    "DevelopmentSource",
    "FeedState",
    "Item",
    "KnownDevelopment",
    "MatchRecord",
    "PollTransaction",
    "SourceRecord",
    "Store",
    "StoreError",
    "StoryMatch",
    "is_sqlite",
    "make_engine",
    "normalise_url",
    "redact",
]
