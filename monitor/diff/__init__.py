"""Diff stage: new coverage against the baseline and the story so far -> developments. Pure.

Placeholder until the issue "Follow the story" lands: it flags nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.store import DevelopmentRecord, KnownDevelopment


@dataclass(frozen=True, slots=True)
class StoryItem:
    """A matched item as the diff stage sees it."""

    item_id: int
    feed: str
    url: str | None
    title: str
    text: str
    published: datetime
    kind: str  # "new" | "updated"
    previous_title: str | None = None
    previous_text: str | None = None


@dataclass(frozen=True, slots=True)
class BaselineModel:
    story_id: str
    text: str


def build_baseline(story_id: str, text: str | None) -> BaselineModel:
    return BaselineModel(story_id, text or "")


def find_developments(
    baseline: BaselineModel, known: Sequence[KnownDevelopment], items: Sequence[StoryItem]
) -> list[DevelopmentRecord]:
    return []
