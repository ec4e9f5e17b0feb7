"""Match stage: does an item belong to a story, and why. Pure functions over plain data.

A story is compiled once (``compile_story``) into one regular expression over folded text (case,
umlauts, ß, accents, quotes and hyphens normalised; see ``monitor.text``) plus a small rule
evaluator:

* **terms** come in named groups with their variants (Selenski, Selenskyj, Zelensky, ...). Each term
  matches its inflected forms (from simplemma's German dictionary: Gipfel -> Gipfels, Gipfeln;
  treffen -> trifft, traf, getroffen; names -> genitive -s), hyphenated compounds
  (Budapest-Gipfel, Tomahawk-Lieferungen) and closed compounds in which it is the first part
  (Gipfeltreffen, Kremlchef) - never the tail of an unrelated word (Alpengipfeln). ``*term`` also
  allows it as the last part (``*gipfel``: Klimagipfel), ``=term`` only the exact word and
  ``!word`` removes a word from its group.
* **rules** (``match`` clauses) score an item: all ``all`` groups, one of the ``any`` groups, none
  of the ``none`` groups within ``near`` (N words or one sentence), times the field weight (title
  or body). ``exclude`` clauses veto. An item matches when its score reaches ``threshold``.
* **story-aware relevance** (``similarity``): lemma-vector cosine to the baseline and to the items
  already matched by rules can add to the score, so follow-ups that use none of the headline
  keywords are found; items published long before the story started (``background``) are not
  coverage. The state lives in the matcher (``StoryMatcher.remember``/``load_story``).
"""

from __future__ import annotations

from monitor.match.engine import (
    CompiledTerms,
    MatchResult,
    StoryMatcher,
    StoryScreen,
    compile_story,
    prepare,
)

__all__ = ["CompiledTerms", "MatchResult", "StoryMatcher", "StoryScreen", "compile_story", "prepare"]
