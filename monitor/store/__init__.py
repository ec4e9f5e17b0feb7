"""Storage: SQLModel tables and the ``Store`` (with ``lite``, the only modules with SQL).

The names below load on first use (PEP 562): ``monitor.store.lite``, the SQLite fast lane of a
poll in which nothing changed, lives in this package and must not pull in SQLAlchemy."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "monitor.store.database": ("is_sqlite", "make_engine", "normalise_url", "redact"),
    "monitor.store.models": (
        "Delivery",
        "Development",
        "DevelopmentSource",
        "FeedState",
        "Item",
        "StoryMatch",
    ),
    "monitor.store.store": (
        "ChangedItem",
        "DevelopmentRecord",
        "KnownDevelopment",
        "MatchRecord",
        "PollTransaction",
        "SourceRecord",
        "Store",
        "StoreError",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

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


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
