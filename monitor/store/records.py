"""What the pipeline hands the store and gets back: plain data, no SQL.

Here, not in ``store.py``, so that the diff stage (which the parse workers import) can name them
without loading SQLAlchemy: that import was ~0.45 s of each worker's first poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.parse import Entry


@dataclass(frozen=True, slots=True)
class ChangedItem:
    """An entry that is new in this poll, or whose content changed since the last one."""

    item_id: int
    feed_name: str
    entry: Entry
    kind: str  # "new" | "updated"
    previous_title: str | None = None
    previous_text: str | None = None


@dataclass(frozen=True, slots=True)
class MatchRecord:
    story_id: str
    item_id: int
    score: float
    terms: Sequence[str]
    evidence: Sequence[str]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    item_id: int
    sentences: Sequence[str]


@dataclass(frozen=True, slots=True)
class DevelopmentRecord:
    """A development to store (new) or to extend with sources (when ``key`` already exists)."""

    story_id: str
    key: str
    title: str
    score: float
    novel: Sequence[str]
    terms: Sequence[str]
    sources: Sequence[SourceRecord]
    first_seen: datetime
    update_of: int | None = None


@dataclass(frozen=True, slots=True)
class KnownDevelopment:
    id: int
    story_id: str
    key: str
    title: str
    novel: list[str]
    terms: list[str]
    first_seen: datetime
