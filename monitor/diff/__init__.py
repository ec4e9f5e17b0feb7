"""Diff stage: new coverage against the baseline and the story so far -> developments. Pure.

``model`` analyses sentences and the baseline, ``novelty`` scores sentences and items,
``developments`` clusters items into developments with deterministic keys.
"""

from __future__ import annotations

from monitor.diff.developments import ItemDiff, StoryItem, diff_items, find_developments, novel_words
from monitor.diff.model import (
    DEFAULT_NOVELTY_THRESHOLD,
    BaselineModel,
    Reference,
    Sentence,
    analyse,
    build_baseline,
)
from monitor.diff.novelty import SENTENCE_MIN, SentenceNovelty, score_item, score_sentence

__all__ = [
    "DEFAULT_NOVELTY_THRESHOLD",
    "SENTENCE_MIN",
    "BaselineModel",
    "ItemDiff",
    "Reference",
    "Sentence",
    "SentenceNovelty",
    "StoryItem",
    "analyse",
    "build_baseline",
    "diff_items",
    "find_developments",
    "novel_words",
    "score_item",
    "score_sentence",
]
