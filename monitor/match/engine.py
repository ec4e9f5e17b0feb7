"""The matching engine: compiled term groups, rule evaluation, similarity and story state."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from monitor.text import (
    TOKEN_CACHE,
    content_lemmas,
    fold,
    inflections,
    sentences,
    unfold,
    want_inflections,
)

# Inflectional endings every term accepts (genitive -s of names, plural -n/-en, adjectival -er ...).
_SUFFIXES = ("", "s", "es", "n", "en", "e", "er", "ern", "ns", "ens", "em")
_SUFFIX_RE = "(?:" + "|".join(s for s in _SUFFIXES if s) + ")?"
# A closed compound needs at least this many letters after the term (Gipfel|ort, not Trump|f).
_MIN_COMPOUND_TAIL = 3
_MIN_COMPOUND_HEAD = 3
_WORD = re.compile(r"[a-z0-9]+")

if TYPE_CHECKING:  # at run time only where a story is compiled: the parse workers, which match
    # with compiled rules (``Prematch``), need not import the configuration's pydantic models
    from monitor.config import RuleClause, StoryConfig, StoryRules


# --- documents -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Document:
    """An item prepared once for all stories: folded text with sentence offsets (title = sentence 0)."""

    sentences: list[str]  # original sentences; [0] is the title
    folded: str
    starts: list[int]  # offset of each sentence in ``folded``
    _word_starts: list[int] | None = None
    _lemmas: Counter[str] | None = None
    _vocab: set[str] | None = None
    _by_prefix: dict[str, list[str]] | None = None
    _positions: dict[str, list[int]] | None = None

    @property
    def vocab(self) -> set[str]:
        """The distinct folded words (hyphenated compounds split into their parts)."""
        if self._vocab is None:
            self._vocab = set(_WORD.findall(self.folded))
        return self._vocab

    @property
    def by_prefix(self) -> dict[str, list[str]]:
        """Distinct words by their first three letters."""
        if self._by_prefix is None:
            index: dict[str, list[str]] = {}
            for word in self.vocab:
                index.setdefault(word[:3], []).append(word)
            self._by_prefix = index
        return self._by_prefix

    def positions(self, word: str) -> list[int]:
        """Offsets of ``word`` (a word of ``vocab``) as a whole word in ``folded``. One search per
        word asked for (a story's few hits), not an index of every word of the text: building that
        was half of matching an item (measured: 0.4 s of 0.9 s for the bench's 6,500 items)."""
        found_at = self._positions
        if found_at is None:
            found_at = self._positions = {}
        found = found_at.get(word)
        if found is None:
            found = found_at[word] = [m.start() for m in _whole_word(word).finditer(self.folded)]
        return found

    def sentence_of(self, pos: int) -> int:
        return bisect_right(self.starts, pos) - 1

    def word_index(self, pos: int) -> int:
        if self._word_starts is None:
            self._word_starts = [m.start() for m in _WORD.finditer(self.folded)]
        return bisect_right(self._word_starts, pos)

    @property
    def title_end(self) -> int:
        return self.starts[1] if len(self.starts) > 1 else len(self.folded) + 1

    def lemma_counts(self) -> Counter[str]:
        if self._lemmas is None:
            self._lemmas = Counter(content_lemmas("\n".join(self.sentences)))
        return self._lemmas


@lru_cache(maxsize=4096)
def _whole_word(word: str) -> re.Pattern[str]:
    """``word`` where ``_WORD`` would find it: not inside a longer run of letters and digits."""
    return re.compile(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])")


@lru_cache(maxsize=512)
def prepare(title: str, text: str) -> Document:
    """Split and fold an item once; cached so several stories share the work."""
    parts = [title.strip(), *sentences(text)]
    folded_parts = [fold(p) for p in parts]
    starts: list[int] = []
    pos = 0
    for p in folded_parts:
        starts.append(pos)
        pos += len(p) + 1
    return Document(parts, "\n".join(folded_parts), starts)


# --- terms ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class CompiledTerms:
    """All term groups of a story, looked up in a document's vocabulary (set operations, so the
    cost hardly grows with the number of terms) and, for phrases, by regular expressions."""

    groups: list[str]
    exact: dict[str, list[tuple[int, str]]]  # folded form -> (group index, term)
    exact_keys: frozenset[str]
    prefixes: dict[str, list[tuple[str, int, str]]]  # first 3 letters -> (stem, group, term)
    heads: list[tuple[str, int, str]]  # (folded tail, group, term)
    phrases: list[tuple[re.Pattern[str], int, str, str]]  # (regex, group, term, first word)
    excluded: dict[int, frozenset[str]]  # group -> folded words (with endings) that never count
    prefix_keys: frozenset[str] = frozenset()
    screen: re.Pattern[str] | None = None  # any text with a hit contains one of these strings
    needles: frozenset[str] = frozenset()  # the strings ``screen`` looks for

    def could_hit(self, title: str, text: str) -> bool:
        """A cheap necessary condition for ``hits``: every hit is a word of the folded title or text
        that contains an exact form, a prefix stem, a compound tail or a phrase's first word, so a
        text without any of those strings has no hit and needs no sentence splitting (most items of
        a poll belong to no story)."""
        screen = self.screen
        if screen is None:
            return True
        return screen.search(fold(title)) is not None or screen.search(fold(text)) is not None

    @classmethod
    def build(cls, term_groups: dict[str, list[str]]) -> CompiledTerms:
        groups = list(term_groups)
        plain_words = [
            t.lstrip("*")
            for terms in term_groups.values()
            for t in terms
            if not t.startswith(("!", "=")) and _is_word(fold(t.lstrip("*")))
        ]
        forms_of = inflections(plain_words)
        exact: dict[str, list[tuple[int, str]]] = {}
        prefixes: dict[str, list[tuple[str, int, str]]] = {}
        heads: list[tuple[str, int, str]] = []
        phrases: list[tuple[re.Pattern[str], int, str, str]] = []
        excluded: dict[int, set[str]] = {}

        def add_exact(form: str, gi: int, term: str) -> None:
            entry = exact.setdefault(form, [])
            if all(g != gi for g, _ in entry):
                entry.append((gi, term))

        for gi, (_name, terms) in enumerate(term_groups.items()):
            for term in terms:
                if term.startswith("!"):
                    base = fold(term[1:].strip())
                    excluded.setdefault(gi, set()).update(base + s for s in _SUFFIXES)
                    continue
                word = term.lstrip("*=").strip()
                base = fold(word)
                if not _is_word(base):
                    # Phrases and hyphenated terms ('ungarische Hauptstadt', 'US-Präsident'):
                    # every word may take an ending; '=' keeps them exact.
                    parts = _WORD.findall(base)
                    ending = "" if term.startswith("=") else _SUFFIX_RE
                    pattern = r"[\s-]+".join(re.escape(w) + ending for w in parts)
                    regex = re.compile(rf"(?<![a-z0-9]){pattern}(?![a-z0-9])")
                    phrases.append((regex, gi, term, parts[0]))
                elif term.startswith("="):
                    add_exact(base, gi, term)
                else:
                    for form in forms_of[word] | {base + s for s in _SUFFIXES}:
                        add_exact(form, gi, term)
                    if len(base) >= 3:
                        prefixes.setdefault(base[:3], []).append((base, gi, term))
                    if term.startswith("*"):
                        heads.append((base, gi, term))
        for entries in prefixes.values():
            entries.sort(key=lambda p: -len(p[0]))
        heads.sort(key=lambda p: -len(p[0]))
        needles = {*exact, *(stem for entries in prefixes.values() for stem, _, _ in entries)}
        needles.update(tail for tail, _, _ in heads)
        needles.update(first for _, _, _, first in phrases)
        return cls(
            groups,
            exact,
            frozenset(exact),
            prefixes,
            heads,
            phrases,
            {g: frozenset(words) for g, words in excluded.items()},
            frozenset(prefixes),
            _screen(needles),
            frozenset(needles),
        )

    def _head_match(self, word: str, tail: str) -> bool:
        """``word`` is a compound ending in ``tail`` (plus an ending), with a real first part."""
        at = word.rfind(tail)
        if at < _MIN_COMPOUND_HEAD:
            return False
        return word[at + len(tail) :] in _SUFFIXES

    def word_hits(self, doc: Document) -> dict[str, list[tuple[int, str]]]:
        """Words of the document that are story terms -> [(group, term)]."""
        vocab = doc.vocab
        found: dict[str, list[tuple[int, str]]] = {w: self.exact[w] for w in vocab & self.exact_keys}
        by_prefix = doc.by_prefix
        for key in self.prefix_keys.intersection(by_prefix):
            entries = self.prefixes[key]
            for word in by_prefix[key]:
                if word in found:
                    continue
                for stem, _, _ in entries:
                    if (
                        word.startswith(stem)
                        and len(word) - len(stem) >= _MIN_COMPOUND_TAIL
                        and not _starts_with_longer_noun(word, stem)
                    ):
                        found[word] = _one_per_group((g, t) for s, g, t in entries if s == stem)
                        break
        for tail, gi, term in self.heads:
            for word in vocab:
                if tail in word and word not in found and self._head_match(word, tail):
                    found[word] = [(gi, term)]
        if self.excluded:
            for word in list(found):
                kept = [(g, t) for g, t in found[word] if word not in self.excluded.get(g, ())]
                if kept:
                    found[word] = kept
                else:
                    del found[word]
        return found

    def hits(self, doc: Document) -> list[tuple[int, int, str]]:
        """(offset, group index, term) for every occurrence of a term."""
        out: list[tuple[int, int, str]] = []
        for word, pairs in self.word_hits(doc).items():
            for pos in doc.positions(word):
                out.extend((pos, gi, term) for gi, term in pairs)
        seen: set[tuple[int, int]] = set()
        by_prefix = doc.by_prefix
        for pattern, gi, term, first in self.phrases:
            if not any(w.startswith(first) for w in by_prefix.get(first[:3], ())):
                continue  # the phrase's first word is not in the text: skip the scan
            for m in pattern.finditer(doc.folded):
                if (m.start(), gi) not in seen:  # 'ungarische(n) Hauptstadt': one hit per place
                    seen.add((m.start(), gi))
                    out.append((m.start(), gi, term))
        return out


def _noun_lemma(folded: str) -> str | None:
    """The folded dictionary form of ``folded`` read as a German noun, if the lexicon knows it as
    one (its lemma capitalised), else None."""
    from monitor import lexicon

    for candidate in (folded, unfold(folded)):
        word = candidate[:1].upper() + candidate[1:]
        if lexicon.is_known(word):
            lemma = lexicon.lemmatize(word)
            if lemma[:1].isupper():
                return fold(lemma)
    return None


@lru_cache(maxsize=TOKEN_CACHE)
def _starts_with_longer_noun(word: str, stem: str) -> bool:
    """Is ``word`` (a closed compound starting with the term ``stem``) rather a compound of a longer
    noun that merely starts like the term: 'trumpfkarte' is Trumpf + Karte, not Trump + fkarte;
    'gipfeltreffen' is Gipfel + Treffen ('gipfelt' is a verb form, not a noun), 'gipfelsturm' is
    Gipfels + Turm (a form of the term itself)."""
    for cut in range(len(stem) + 1, len(word) - _MIN_COMPOUND_TAIL + 1):
        head = _noun_lemma(word[:cut])
        if head is None or head == stem:
            continue
        tail = word[cut:]
        if _noun_lemma(tail) is not None or (tail[:1] == "s" and _noun_lemma(tail[1:]) is not None):
            return True
    return False


def _screen(needles: set[str]) -> re.Pattern[str] | None:
    """One regex for "contains any of these strings"; a needle containing a shorter one is left out
    (the shorter one already finds it). None (no screening) when there is nothing to look for."""
    kept: list[str] = []
    for needle in sorted(n for n in needles if n):
        if not any(k in needle for k in kept):
            kept = [k for k in kept if needle not in k] + [needle]
    if not kept:
        return None
    return re.compile("|".join(re.escape(k) for k in sorted(kept, key=len, reverse=True)))


class StoryScreen:
    """One screen for several stories: ``could_hit`` is False only when no story's
    ``CompiledTerms.could_hit`` could be True, so an item it rejects needs no per-story matching
    (most items of a poll belong to no story; one search of all stories' strings instead of two
    per story)."""

    def __init__(self, matchers: Iterable[StoryMatcher]) -> None:
        self.stories = tuple(matchers)
        needles: set[str] = set()
        pattern: re.Pattern[str] | None = None
        for t in (m.terms for m in self.stories):
            if t.screen is None:  # a story without screen may hit anything: screen nothing
                break
            needles.update(t.needles)
        else:
            pattern = _screen(needles)
            if pattern is None:  # no story has anything to look for: nothing can hit
                pattern = re.compile(r"(?!)")
        self._pattern = pattern

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The one search (None: every item could hit); ``screen_could_hit`` applies it."""
        return self._pattern

    def could_hit(self, title: str, text: str) -> bool:
        return screen_could_hit(self._pattern, title, text)

    def prematch(self) -> Prematch:
        """The screen and every story's rules as plain data, for the parse workers."""
        return Prematch(
            self._pattern,
            tuple(m.rule_set for m in self.stories),
            any(m.similarity is not None for m in self.stories),
        )


@dataclass(frozen=True, slots=True)
class Prematch:
    """What the parse workers match before the writer sees an item: the stories' screen and each
    story's rules, which depend on the item alone (``StoryRuleSet.outcome``). The rest of a match
    (similarity to the story so far, background, remembering) reads the story state and stays
    with the writer (``StoryMatcher.match(..., outcome=)``)."""

    pattern: re.Pattern[str] | None
    rules: tuple[StoryRuleSet, ...]
    wants_documents: bool  # a story compares items by similarity: it needs the prepared document

    def outcomes(self, title: str, text: str) -> tuple[Document, tuple[RuleOutcome | None, ...]] | None:
        """The item's prepared document and, per story (in ``rules`` order), its rule outcome;
        None when no story's terms occur in it (what ``match`` would call "no story terms" for
        every story)."""
        if not screen_could_hit(self.pattern, title, text):
            return None
        doc: Document | None = None
        found: list[RuleOutcome | None] = []
        for rules in self.rules:
            if not rules.terms.could_hit(title, text):
                found.append(None)
                continue
            if doc is None:
                doc = prepare(title, text)
            found.append(rules.outcome(doc))
        if doc is None or not any(found):
            return None
        return doc, tuple(found)


def screen_could_hit(pattern: re.Pattern[str] | None, title: str, text: str) -> bool:
    """``StoryScreen.could_hit`` for its ``pattern`` (plain data: the parse workers get it)."""
    if pattern is None:
        return True
    return pattern.search(fold(title)) is not None or pattern.search(fold(text)) is not None


def _is_word(folded: str) -> bool:
    return _WORD.fullmatch(folded) is not None


def _one_per_group(pairs: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    out: dict[int, str] = {}
    for gi, term in pairs:
        out.setdefault(gi, term)
    return list(out.items())


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchResult:
    story_id: str
    matched: bool
    score: float
    terms: tuple[str, ...]  # the story terms that matched
    evidence: tuple[str, ...]  # sentences that contain them
    rules: tuple[str, ...] = ()  # the clauses that held ("name" or "match[i]")
    reason: str = ""  # one line: why it matched or not
    baseline_similarity: float | None = None
    story_similarity: float | None = None
    background: bool = False
    points: tuple[tuple[str, float], ...] = ()  # what each clause (and similarity) added


@dataclass(slots=True)
class _Clause:
    label: str
    all: tuple[int, ...]
    any: tuple[int, ...]
    none: tuple[int, ...]
    near: int | str | None
    weight: float

    @property
    def groups(self) -> tuple[int, ...]:
        return self.all + self.any


@dataclass(slots=True)
class StoryState:
    """What the matcher knows about the story so far (rebuilt from the store on start)."""

    start: datetime | None = None  # when the story started (see ``note_restatement``)
    vectors: deque[tuple[dict[str, float], float]] = field(default_factory=lambda: deque(maxlen=400))
    # The dated items most similar to the baseline, (similarity, published): restatements of the
    # baseline cluster around the time it was written.
    closest: list[tuple[float, datetime]] = field(default_factory=list)

    def note_restatement(self, similarity: float, published: datetime) -> None:
        """The story started when the baseline was written: the median date of the three items
        closest to the baseline (one old item that happens to resemble it cannot move it)."""
        self.closest.append((similarity, published))
        self.closest.sort(key=lambda p: (-p[0], p[1]))
        del self.closest[3:]
        dates = sorted(p[1] for p in self.closest)
        self.start = dates[(len(dates) - 1) // 2] if len(dates) != 2 else self.closest[0][1]


def _vector(counts: Counter[str]) -> tuple[dict[str, float], float]:
    vec = {k: 1.0 + math.log(v) for k, v in counts.items()}
    return vec, math.sqrt(sum(w * w for w in vec.values())) or 1.0


def _cosine(a: tuple[dict[str, float], float], b: tuple[dict[str, float], float]) -> float:
    small, large = (a, b) if len(a[0]) <= len(b[0]) else (b, a)
    dot = sum(w * large[0].get(k, 0.0) for k, w in small[0].items())
    return dot / (a[1] * b[1])


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What a story's rules say of an item (``StoryRuleSet.outcome``): depends on the item and the
    rules alone, not on the story state, so a parse worker can compute it."""

    score: float  # the clauses' points
    held: tuple[str, ...]  # the clauses that held
    points: tuple[tuple[str, float], ...]
    vetoes: tuple[str, ...]  # the exclude clauses that held
    present: frozenset[int]  # the term groups found
    terms: tuple[str, ...]  # the story terms found, in text order
    evidence: tuple[str, ...]  # the sentences that show them (at most 5)


@dataclass(frozen=True, slots=True)
class StoryRuleSet:
    """One story's compiled terms and clauses: plain data (picklable), no story state."""

    terms: CompiledTerms
    clauses: tuple[_Clause, ...]
    excludes: tuple[_Clause, ...]
    title_weight: float
    body_weight: float

    def outcome(self, doc: Document) -> RuleOutcome | None:
        """The rules' verdict on a prepared item; None when none of the story's terms occur."""
        hits = self.terms.hits(doc)
        if not hits:
            return None
        by_sentence: dict[int, set[int]] = {}
        present: set[int] = set()
        for pos, gi, _term in hits:
            by_sentence.setdefault(doc.sentence_of(pos), set()).add(gi)
            present.add(gi)
        score = 0.0
        held: list[str] = []
        points: list[tuple[str, float]] = []
        evidence_sentences: set[int] = set()
        for c in self.clauses:
            result = _evaluate(c, doc, hits, by_sentence, present)
            if result is None:
                continue
            in_title, sents = result
            added = c.weight * (self.title_weight if in_title else self.body_weight)
            score += added
            held.append(c.label)
            points.append((f"{c.label} ({'title' if in_title else 'body'})", added))
            evidence_sentences.update(sents)
        vetoes = tuple(c.label for c in self.excludes if _evaluate(c, doc, hits, by_sentence, present))
        if not evidence_sentences:
            # Similarity-only matches: show where the story's terms appear.
            evidence_sentences = {doc.sentence_of(pos) for pos, _, _ in hits}
        return RuleOutcome(
            score,
            tuple(held),
            tuple(points),
            vetoes,
            frozenset(present),
            tuple(dict.fromkeys(term for _, _, term in sorted(hits))),
            tuple(doc.sentences[i] for i in sorted(evidence_sentences)[:5]),
        )


# --- the matcher ---------------------------------------------------------------------------------


def _rules_for(story: StoryConfig) -> StoryRules:
    from monitor.config import FieldWeights, RuleClause, StoryRules

    if story.rules is None:
        return StoryRules(
            terms={"keywords": list(story.keywords)},
            match=[RuleClause(name="keywords", any=["keywords"])],
            threshold=1.0,
            fields=FieldWeights(title=1.0, body=1.0),
        )
    if story.keywords and "keywords" not in story.rules.terms:
        terms = {**story.rules.terms, "keywords": list(story.keywords)}
        return story.rules.model_copy(update={"terms": terms})
    return story.rules


class StoryMatcher:
    """A compiled story. ``match`` is pure apart from reading the story state; ``remember`` adds a
    matched item to the state (the pipeline calls it for every item it stores as matched)."""

    def __init__(self, story: StoryConfig, baseline_text: str | None = None) -> None:
        self.story = story
        self.rules = _rules_for(story)
        self._term_groups = {k: list(v) for k, v in self.rules.terms.items()}
        self._terms: CompiledTerms | None = None  # built on first use: see ``terms``
        self._rule_set: StoryRuleSet | None = None  # likewise: see ``rule_set``
        want_inflections(
            t.lstrip("*") for terms in self._term_groups.values() for t in terms if t[:1] not in "!="
        )
        index = {name: i for i, name in enumerate(self._term_groups)}

        def clause(c: RuleClause, label: str) -> _Clause:
            return _Clause(
                c.name or label,
                tuple(index[g] for g in c.all),
                tuple(index[g] for g in c.any),
                tuple(index[g] for g in c.none),
                c.near,
                c.weight,
            )

        self.clauses = [clause(c, f"match[{i}]") for i, c in enumerate(self.rules.match)]
        self.excludes = [clause(c, f"exclude[{i}]") for i, c in enumerate(self.rules.exclude)]
        sim = self.rules.similarity
        self.similarity = sim
        self.requires = tuple(index[g] for g in sim.requires) if sim else ()
        self.baseline_vector = (
            _vector(Counter(content_lemmas(baseline_text))) if sim and baseline_text else None
        )
        self.state = StoryState()
        # Most items of a poll have none of a story's terms: one (immutable) answer for all of them.
        self._no_terms = MatchResult(story.id, False, 0.0, (), (), reason="no story terms")

    @property
    def terms(self) -> CompiledTerms:
        """The compiled terms; built lazily so that all stories of a config share one pass over
        the lemma dictionary."""
        if self._terms is None:
            self._terms = CompiledTerms.build(self._term_groups)
        return self._terms

    # -- state ------------------------------------------------------------------------------------

    def load_story(self, items: Iterable[tuple[datetime | None, str, str]]) -> None:
        """Rebuild the story state from items already matched (published, title, text)."""
        for published, title, text in items:
            self.remember(title, text, published)

    def remember(self, title: str, text: str, published: datetime | None) -> None:
        if self.similarity is None:
            return
        doc = prepare(title, text)
        vec = _vector(doc.lemma_counts())
        self.state.vectors.append(vec)
        if published is not None and self.baseline_vector is not None:
            similarity = _cosine(vec, self.baseline_vector)
            if similarity >= self.similarity.anchor:
                self.state.note_restatement(similarity, published)

    @property
    def background_cutoff(self) -> datetime | None:
        """Items dated before this are background (None while the story's start is unknown)."""
        if self.rules.background is None or self.state.start is None:
            return None
        return self.state.start - timedelta(seconds=self.rules.background)

    def candidate(self, title: str, text: str) -> bool:
        """Could this item match once its full text is known? True when it matches already or a
        teaser mentions the terms of any rule (used to decide which article pages to fetch)."""
        doc = prepare(title or "", text or "")
        found = {gi for _, gi, _ in self.terms.hits(doc)}
        if not found:
            return False
        if self.requires and found.intersection(self.requires):
            return True
        return any(found.intersection(c.groups) for c in self.clauses)

    # -- matching ---------------------------------------------------------------------------------

    @property
    def rule_set(self) -> StoryRuleSet:
        """The story's terms and clauses as plain data (what a parse worker needs to match)."""
        if self._rule_set is None:
            fields = self.rules.fields
            self._rule_set = StoryRuleSet(
                self.terms, tuple(self.clauses), tuple(self.excludes), fields.title, fields.body
            )
        return self._rule_set

    def match(
        self,
        title: str,
        text: str,
        published: datetime | None = None,
        *,
        remember: bool = True,
        doc: Document | None = None,
        outcome: RuleOutcome | bool | None = True,
    ) -> MatchResult:
        """Score one item. ``published`` is None when the feed gave no date (no background check).
        A matched item is added to the story state unless ``remember`` is false. ``doc``:
        ``prepare(title, text)`` when already computed; ``outcome``: ``rule_set.outcome(doc)`` when
        already computed (by the parse worker; None: no story terms), True: compute it here."""
        if outcome is True:
            if not self.terms.could_hit(title or "", text or ""):
                return self._no_terms
            if doc is None:
                doc = prepare(title or "", text or "")
            outcome = self.rule_set.outcome(doc)
        if not isinstance(outcome, RuleOutcome):
            return self._no_terms
        score = outcome.score
        points = list(outcome.points)
        base_sim: float | None = None
        story_sim: float | None = None
        sim = self.similarity
        if sim is not None and (not self.requires or outcome.present.intersection(self.requires)):
            if doc is None:
                doc = prepare(title or "", text or "")
            vec = _vector(doc.lemma_counts())
            if self.baseline_vector is not None:
                base_sim = _cosine(vec, self.baseline_vector)
                if sim.baseline and base_sim >= sim.baseline:
                    score += sim.weight
                    points.append((f"similar to the baseline ({base_sim:.2f})", sim.weight))
            if self.state.vectors:
                story_sim = max(_cosine(vec, v) for v in self.state.vectors)
                if sim.story and story_sim >= sim.story:
                    score += sim.weight
                    points.append((f"similar to a story item ({story_sim:.2f})", sim.weight))
        background = False
        if (
            published is not None
            and self.rules.background is not None
            and self.state.start is not None
            and published < self.state.start - timedelta(seconds=self.rules.background)
        ):
            background = True
        threshold = self.rules.threshold
        vetoes = outcome.vetoes
        matched = score >= threshold and not vetoes and not background
        if vetoes:
            reason = f"excluded by {', '.join(vetoes)}"
        elif background:
            reason = "background: published long before the story started"
        elif matched:
            reason = f"score {score:g} >= threshold {threshold:g}"
        else:
            reason = f"score {score:g} < threshold {threshold:g}"
        if matched and remember and outcome.score >= threshold:
            self.remember(title, text, published)
        return MatchResult(
            self.story.id,
            matched,
            round(score, 3),
            outcome.terms,
            outcome.evidence,
            outcome.held,
            reason,
            None if base_sim is None else round(base_sim, 3),
            None if story_sim is None else round(story_sim, 3),
            background,
            tuple((label, round(p, 3)) for label, p in points),
        )


def _evaluate(
    c: _Clause,
    doc: Document,
    hits: Sequence[tuple[int, int, str]],
    by_sentence: dict[int, set[int]],
    present: set[int],
) -> tuple[bool, set[int]] | None:
    """None when the clause does not hold; else (held in the title alone, evidence sentences)."""

    def ok(groups: set[int]) -> bool:
        return (
            all(g in groups for g in c.all)
            and (not c.any or any(g in groups for g in c.any))
            and not any(g in groups for g in c.none)
        )

    if not (all(g in present for g in c.all) and (not c.any or present.intersection(c.any))):
        return None
    if c.near is None:
        if not ok(present):
            return None
        sents = {s for s, gs in by_sentence.items() if gs.intersection(c.groups)}
        return ok(by_sentence.get(0, set())), sents
    if c.near == "sentence":
        sents = {s for s, gs in by_sentence.items() if ok(gs)}
        if not sents:
            return None
        return 0 in sents, sents
    # Within N words: slide a window over the hits of the clause's groups.
    span = int(c.near)
    relevant = set(c.groups) | set(c.none)
    positioned = sorted(
        (doc.word_index(pos), gi, doc.sentence_of(pos)) for pos, gi, _ in hits if gi in relevant
    )
    sents: set[int] = set()
    for i, (w0, _, _) in enumerate(positioned):
        window = [(w, g, s) for w, g, s in positioned[i:] if w - w0 <= span]
        if ok({g for _, g, _ in window}):
            sents.update(s for _, _, s in window)
    # A headline is shorter than any sensible window: the clause holds in it or not.
    return (ok(by_sentence.get(0, set())), sents) if sents else None


def compile_story(story: StoryConfig, baseline_text: str | None = None) -> StoryMatcher:
    return StoryMatcher(story, baseline_text)
