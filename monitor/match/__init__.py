"""Match stage: does an entry belong to a story, and why. Pure functions over plain data.

This first matcher folds text (case, umlauts, ß) and looks for the story's keywords as whole words
or compound parts; the issue "German-aware matching" replaces it with rules and morphology.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from monitor.config import StoryConfig
from monitor.text import fold, sentences


@dataclass(frozen=True, slots=True)
class MatchResult:
    story_id: str
    matched: bool
    score: float
    terms: tuple[str, ...]  # the story terms that matched
    evidence: tuple[str, ...]  # sentences that contain them


class StoryMatcher:
    def __init__(self, story: StoryConfig, baseline_text: str | None = None) -> None:
        self.story = story
        self._patterns = [
            (kw, re.compile(r"(?<![a-z0-9])" + re.escape(fold(kw)) + r"[a-z]*", re.I))
            for kw in story.keywords
        ]

    def match(self, title: str, text: str, published: datetime | None = None) -> MatchResult:
        doc = fold(f"{title}\n{text}")
        terms = tuple(kw for kw, pattern in self._patterns if pattern.search(doc))
        evidence: list[str] = []
        if terms:
            for sentence in sentences(f"{title}\n{text}"):
                folded = fold(sentence)
                if any(p.search(folded) for _, p in self._patterns):
                    evidence.append(sentence)
                if len(evidence) >= 5:
                    break
        return MatchResult(self.story.id, bool(terms), float(len(terms)), terms, tuple(evidence))


def compile_story(story: StoryConfig, baseline_text: str | None = None) -> StoryMatcher:
    return StoryMatcher(story, baseline_text)
