"""Novelty: which sentences of an item state something the reference (baseline + known
developments) does not, and how strongly. Pure functions.

Score of one sentence (documented in README "Developments"):

    lexical  = weighted share of its content terms the reference does not cover
               (names weigh 1.5; a compound counts half when one of its parts is known),
               damped for sentences with fewer than 5 content terms
    + 0.15 per new name (max 2)  + 0.10 per new number/date/weekday (max 2)
    + 0.45 when it carries a change-of-state cue the reference does not (abgesagt, verschoben, ...)
    + 0.15 when it negates a reference sentence it otherwise restates ("keine Tomahawks")
    x 0.35 when it is background (pluperfect, "bereits im August")
    x 0.35 when it shares no key term or actor with the story (off-topic filler)

A sentence is novel when its score >= ``SENTENCE_MIN``. The item's score sums its best three
novel sentences with weights 1, 0.6, 0.3 (headline sentences x1.2); an item is a development
candidate when that reaches the story's ``novelty_threshold``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from monitor.diff.model import Reference, Sentence, analyse, cue_family, split_sentences
from monitor.text import fold

SENTENCE_MIN = 0.55
# Weights of a sentence's terms: names and nouns carry facts; verbs, adjectives and adverbs mostly
# carry the telling (colour, commentary).
NAME_WEIGHT = 1.5
NOUN_WEIGHT = 1.0
OTHER_WEIGHT = 0.4
CUE_BONUS = 0.6
# The weights in tenths, for the integer sums in ``score_sentence``.
_NAME_TENTHS, _NOUN_TENTHS, _OTHER_TENTHS = (round(w * 10) for w in (NAME_WEIGHT, NOUN_WEIGHT, OTHER_WEIGHT))
TOP_WEIGHTS = (1.0, 0.6, 0.3)
# Inverted pyramid: news leads with what is new. A restatement often adds colour deep in the body.
TITLE_WEIGHT = 1.6
LEAD_SENTENCES = 3
LEAD_WEIGHT = 1.0
BODY_WEIGHT = 0.25


@dataclass(frozen=True, slots=True)
class SentenceNovelty:
    sentence: Sentence
    score: float
    new_terms: tuple[str, ...]
    new_names: tuple[str, ...]
    new_numbers: tuple[str, ...]
    new_cues: tuple[str, ...]
    is_title: bool = False
    position: int = 0  # index among the body sentences (0 = lead)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled by the parse workers (monitor.story_work), like ``Sentence``: the constructor's
        # arguments unpickle faster than the default state protocol of a slotted dataclass.
        return (
            SentenceNovelty,
            (
                self.sentence,
                self.score,
                self.new_terms,
                self.new_names,
                self.new_numbers,
                self.new_cues,
                self.is_title,
                self.position,
            ),
        )

    @property
    def weight(self) -> float:
        if self.is_title:
            return TITLE_WEIGHT
        return LEAD_WEIGHT if self.position < LEAD_SENTENCES else BODY_WEIGHT

    @property
    def text(self) -> str:
        return self.sentence.text

    @property
    def novel(self) -> bool:
        return self.score >= SENTENCE_MIN


def _best_overlap(sentence: Sentence, reference: Reference) -> tuple[float, Sentence | None]:
    """Share of the sentence's terms found in the single most similar reference sentence."""
    if not sentence.terms:
        return 0.0, None
    best, best_ref = 0.0, None
    terms = sentence.terms
    for ref in reference.sentences:
        common = len(terms & ref.terms)
        if common:
            share = common / len(terms)
            if share > best:
                best, best_ref = share, ref
    return best, best_ref


def score_sentence(
    sentence: Sentence,
    reference: Reference,
    key_terms: frozenset[str],
    *,
    is_title: bool = False,
    position: int = 0,
) -> SentenceNovelty:
    terms = sentence.terms
    if not terms:
        return SentenceNovelty(sentence, 0.0, (), (), (), (), is_title, position)
    # Summed in integers (tenths of a weight, halves of coverage): ``terms`` is a set, whose order
    # differs between processes (string hashing), and a float sum would differ in its last bits
    # with the order; the same sentence must score the same in every process.
    total = new = 0
    new_terms: list[str] = []
    names, nouns = sentence.names, sentence.nouns
    covers, knows_name = reference.covers, reference.knows_name  # ~40,000 sentences a first poll
    for term in terms:
        is_name = term in names
        is_noun = term in nouns
        weight = _NAME_TENTHS if is_name else _NOUN_TENTHS if is_noun else _OTHER_TENTHS
        total += weight
        covered = covers(term)  # 1.0, 0.5 or 0.0
        if covered == 1.0:
            continue
        if (is_name or is_noun) and knows_name(term):
            continue  # 'Selenskyj' for 'Selenski', 'Putins' for 'Putin'
        if covered:
            new += weight  # half of the weight, in halves
        else:
            new += 2 * weight
            new_terms.append(term)
    lexical = new / (2 * total)
    lexical *= min(1.0, len(terms) / 5)
    new_names = tuple(sorted(n for n in names if covers(n) < 1 and not knows_name(n))) if names else ()
    new_numbers = tuple(sorted(sentence.numbers - reference.numbers))
    new_cues = tuple(c for c in sentence.cues if cue_family(c) not in reference.cues)
    score = lexical + 0.15 * min(len(new_names), 2) + 0.10 * min(len(new_numbers), 2)
    if new_cues:
        score += CUE_BONUS
    if sentence.negated and lexical < 0.5:
        overlap, ref = _best_overlap(sentence, reference)
        if ref is not None and overlap >= 0.5 and not ref.negated:
            score += 0.15
    if sentence.background:
        score *= 0.35
    anchored = bool(terms & key_terms) or any(knows_name(n) for n in names)
    if not anchored:
        score *= 0.35
    return SentenceNovelty(
        sentence,
        round(score, 4),
        tuple(sorted(new_terms)),
        new_names,
        new_numbers,
        new_cues,
        is_title,
        position,
    )


# Story-independent: an item that matches several stories is split and analysed once for all of
# them (the pipeline diffs one feed's items story after story, so a small cache holds them).
@lru_cache(maxsize=256)
def item_sentences(title: str, text: str) -> tuple[tuple[Sentence, bool], ...]:
    """The item's sentences (headline first), each once: feeds often repeat the headline."""
    seen: set[str] = set()
    out: list[tuple[Sentence, bool]] = []
    for raw, is_title in [
        *((s, True) for s in split_sentences(title)),
        *((s, False) for s in split_sentences(text)),
    ]:
        key = fold(raw)
        if key in seen:
            continue
        seen.add(key)
        out.append((analyse(raw), is_title))
    return tuple(out)


def score_item(
    sentences: Iterable[tuple[Sentence, bool]], reference: Reference, key_terms: frozenset[str]
) -> tuple[float, list[SentenceNovelty]]:
    """(item score, novel sentences in text order)."""
    scored = []
    position = 0
    for sentence, is_title in sentences:
        scored.append(score_sentence(sentence, reference, key_terms, is_title=is_title, position=position))
        if not is_title:
            position += 1
    novel = [s for s in scored if s.novel]
    return aggregate(novel), novel


def aggregate(novel: Sequence[SentenceNovelty]) -> float:
    weighted = sorted((s.score * s.weight for s in novel), reverse=True)
    return round(sum(w * s for w, s in zip(TOP_WEIGHTS, weighted, strict=False)), 4)
