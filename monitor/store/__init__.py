"""Storage: SQLModel tables and the ``Store`` (with ``lite``, the only modules with SQL).

The names below load on first use (PEP 562): ``monitor.store.lite``, the SQLite fast lane of a
poll in which nothing changed, lives in this package and must not pull in SQLAlchemy."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Where each public name lives; imported on first access (``__getattr__``).
_HOMES = {
    "monitor.store.database": ("is_sqlite", "make_engine", "normalise_url", "redact"),
    "monitor.store.models": ("Delivery", "Development", "DevelopmentSource", "FeedState", "Item", "StoryMatch"),
    "monitor.store.records": ("ChangedItem", "DevelopmentRecord", "KnownDevelopment", "MatchRecord", "SourceRecord"),
    "monitor.store.store": ("PollTransaction", "Store", "StoreError"),
}  # fmt: skip
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF)

if TYPE_CHECKING:  # the same names for type checkers (re-exports, hence noqa: F401)
    from monitor.store.database import is_sqlite, make_engine, normalise_url, redact  # noqa: F401
    from monitor.store.models import (  # noqa: F401
        Delivery,
        Development,
        DevelopmentSource,
        FeedState,
        Item,
        StoryMatch,
    )
    from monitor.store.records import (  # noqa: F401
        ChangedItem,
        DevelopmentRecord,
        KnownDevelopment,
        MatchRecord,
        SourceRecord,
    )
    from monitor.store.store import PollTransaction, Store, StoreError  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
