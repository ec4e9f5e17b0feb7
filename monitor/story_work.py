"""What a parse worker does for the stories, next to the parse (``monitor.parse_pool``).

For the entries in which some story's terms occur: each story's rule outcome (``match.Prematch``)
and the diff of the entry against each story's baseline (``diff.baseline_novelty``). Both depend on
the entry, the rules and the baseline alone, never on the story so far, so they can run in any
process. The writer (``Monitor._match`` and ``Monitor._diff_batch``) adds what reads the story
state: similarity to the story so far, background, and the diff against the story so far, which
only the entries with news against the baseline need; the sentence analysis goes back to the
writer for those entries alone.
Pure: the values the writer would compute itself.

Why here: the writer is one thread of the main process, sharing its interpreter lock with the event
loop and the pool's result handling. Measured on the bench's first poll of 500 feeds with five
stories (6,536 entries with story terms, 7,556 rule outcomes): the writer's diff 0.52 -> 0.19 s of
CPU, and the sentence analysis goes back for the 611 entries with news instead of all 6,536 (the
pickled results 19.4 -> 15.1 MB). On 2 cores that first poll's wall time stays the same (every core
is busy either way); the main process has that much more room for fetching and writing.

``StoryWork`` is what a worker needs, pickled once per set of stories (``payload``) and sent along
with the parse tasks until a worker has parsed with it; then a task names it by key alone, and a
worker that does not hold the key named says so (``StoriesUnknown``) and gets the task again with the
payload (``ParsePool``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: a worker that parses without stories needs neither
    from monitor.diff.model import BaselineModel
    from monitor.match.engine import Prematch, StoryScreen
    from monitor.parse import ParsedFeed


@dataclass(frozen=True, slots=True)
class StoryWork:
    """The stories as a parse worker needs them: the screen and each story's rules, and each
    story's baseline (in ``prematch.rules`` order)."""

    prematch: Prematch
    baselines: tuple[BaselineModel, ...]

    @classmethod
    def build(cls, screen: StoryScreen, baselines: Sequence[BaselineModel]) -> StoryWork:
        """For the screen's stories and their baselines (same order). A baseline goes without its
        article text and sentence list (scoring reads the reference alone) and with a reference
        without look-up caches (each worker fills its own)."""
        if len(baselines) != len(screen.stories):
            raise ValueError("one baseline per story")
        lean = tuple(replace(b, text="", sentences=[], reference=b.reference.copy()) for b in baselines)
        return cls(screen.prematch(), lean)

    def payload(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)


def payload_key(payload: bytes) -> str:
    """Names a payload in the parse tasks and in what the workers return (``ParsedFeed.screened``)."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


class StoriesUnknown(Exception):
    """A parse task named stories (by key) this worker does not hold: send them along."""

    def __init__(self, key: str, pid: int) -> None:
        super().__init__(key, pid)
        self.key = key
        self.pid = pid  # the worker's


# The worker's stories: the last payload it was sent (the same one serves every parse until the
# stories change), unpickled once.
_held: tuple[str, StoryWork] | None = None


def load(key: str, payload: bytes | None) -> StoryWork:
    """The stories named ``key``: unpickled from ``payload`` when it comes along (and kept), else
    the ones kept. Raises ``StoriesUnknown`` when they are not the ones kept and none came."""
    global _held
    held = _held
    if held is not None and held[0] == key:
        return held[1]
    if payload is None:
        raise StoriesUnknown(key, os.getpid())
    work = pickle.loads(payload)
    if not isinstance(work, StoryWork):
        raise TypeError(f"not a StoryWork payload: {type(work).__name__}")
    _held = (key, work)
    return work


def analyse_candidates(parsed: ParsedFeed, work: StoryWork, key: str) -> ParsedFeed:
    """Fills, for the entries in which some story's terms occur: ``parsed.outcomes`` (per story,
    what its rules say, ``match.Prematch.outcomes``), ``parsed.novelty`` (per story, the diff
    against its baseline, ``diff.baseline_novelty``; None where its rules found nothing),
    ``parsed.sentences`` (``diff.novelty.item_sentences``) for the entries with news against some
    baseline and, when a story compares by similarity, ``parsed.documents``; ``parsed.screened``
    is ``key``."""
    if not parsed.is_feed:
        return parsed
    from monitor.diff.developments import baseline_novelty
    from monitor.diff.novelty import item_sentences
    from monitor.match.engine import Document

    prematch = work.prematch
    baselines = work.baselines
    for entry in parsed.entries:
        found = prematch.outcomes(entry.title, entry.text)
        if found is None:
            continue
        doc, outcomes = found
        entry_id = entry.entry_id
        parsed.outcomes[entry_id] = outcomes
        sentences = item_sentences(entry.title, entry.text)
        novelty = tuple(
            None if outcome is None else baseline_novelty(baseline, sentences)
            for outcome, baseline in zip(outcomes, baselines, strict=True)
        )
        parsed.novelty[entry_id] = novelty
        if any(n is not None and n[1] for n in novelty):  # news: diffed against the story so far
            parsed.sentences[entry_id] = sentences
        if prematch.wants_documents:  # without the lookups matching cached on it: not needed
            parsed.documents[entry_id] = Document(doc.sentences, doc.folded, doc.starts)
    parsed.screened = key
    return parsed
