"""Mark the words of a novel sentence that the baseline does not contain. Pure.

The diff stage owns novelty (which sentences are new); this only shows *why* a sentence reads as
new: its words that appear nowhere in the baseline. When the diff stage can judge words
(``monitor.diff.novel_words`` against its baseline model) its judgement is used. The one place
that decides what is highlighted: the dashboard (``monitor.web``) and the alert emails
(``monitor.alert.message``) both render these segments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from monitor import text as textlib

# Words of the sentence as written (keeps umlauts, case and hyphenated compounds).
_TOKEN_RE = re.compile(r"[^\W_]+(?:[-‐‑][^\W_]+)*")  # the same tokens as the diff stage


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    new: bool


@lru_cache(maxsize=64)
def baseline_vocabulary(baseline_text: str) -> frozenset[str]:
    """Folded words and their lemmas, plus the parts of hyphenated compounds."""
    vocab: set[str] = set()
    for word in textlib.words(baseline_text):
        for part in (word, *word.split("-")):
            vocab.add(part)
            vocab.add(textlib.lemma(part))
    return frozenset(vocab)


def _is_known(word: str, vocab: frozenset[str]) -> bool:
    folded = textlib.fold(word)
    if len(folded) <= 2 and not folded.isdigit():
        return True  # articles, prepositions, initials: never the news
    parts = [folded, *folded.split("-")] if "-" in folded else [folded]
    if folded in vocab or textlib.lemma(folded) in vocab:
        return True
    # A compound is known when all of its parts are ("Budapest-Gipfel" against "Gipfel in Budapest").
    return len(parts) > 1 and all(p in vocab or textlib.lemma(p) in vocab for p in parts[1:])


def highlight_segments(sentence: str, baseline_text: str) -> list[Segment]:
    """Split ``sentence`` into segments; ``new`` marks words absent from the baseline. Uses the diff
    stage's judgement (``monitor.diff.novel_words``) when it is available, else a lemma lookup."""
    if not baseline_text:
        return [Segment(sentence, False)] if sentence else []
    novel = _diff_novel_words(sentence, baseline_text)
    vocab = baseline_vocabulary(baseline_text) if novel is None else frozenset()
    segments: list[Segment] = []
    pos = 0
    for m in _TOKEN_RE.finditer(sentence):
        if m.start() > pos:
            segments.append(Segment(sentence[pos : m.start()], False))
        word = m.group(0)
        new = word in novel if novel is not None else not _is_known(word, vocab)
        segments.append(Segment(word, new))
        pos = m.end()
    if pos < len(sentence):
        segments.append(Segment(sentence[pos:], False))
    return _merge(segments)


@lru_cache(maxsize=16)
def _diff_baseline(baseline_text: str) -> object | None:
    try:
        from monitor import diff

        return diff.build_baseline("highlight", baseline_text)
    except Exception:  # the diff stage is optional here: fall back to the lemma lookup
        return None


def _diff_novel_words(sentence: str, baseline_text: str) -> set[str] | None:
    model = _diff_baseline(baseline_text)
    if model is None:
        return None
    try:
        from monitor import diff

        return set(diff.novel_words(sentence, model.reference))  # type: ignore[attr-defined]
    except Exception:
        return None


def _merge(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring new words (and the space between them) into one mark."""
    out: list[Segment] = []
    for i, seg in enumerate(segments):
        if (
            out
            and not seg.new
            and seg.text.isspace()
            and out[-1].new
            and i + 1 < len(segments)
            and segments[i + 1].new
        ):
            out[-1] = Segment(out[-1].text + seg.text, True)
            continue
        if out and out[-1].new and seg.new:
            out[-1] = Segment(out[-1].text + seg.text, True)
            continue
        out.append(seg)
    return out
