"""Diff stage: new coverage against the baseline and the story so far -> developments. Pure.

``model`` analyses sentences and the baseline, ``novelty`` scores sentences and items,
``developments`` clusters items into developments with deterministic keys.
"""

from __future__ import annotations

from monitor.diff.developments import (
    BACKGROUND_GRACE,
    BaselineNovelty,
    ItemDiff,
    StoryItem,
    background_before,
    baseline_novelty,
    diff_items,
    find_developments,
    novel_words,
)
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
    "BACKGROUND_GRACE",
    "DEFAULT_NOVELTY_THRESHOLD",
    "SENTENCE_MIN",
    "BaselineModel",
    "BaselineNovelty",
    "ItemDiff",
    "Reference",
    "Sentence",
    "SentenceNovelty",
    "StoryItem",
    "analyse",
    "background_before",
    "baseline_novelty",
    "build_baseline",
    "diff_items",
    "find_developments",
    "novel_words",
    "score_item",
    "score_sentence",
]
