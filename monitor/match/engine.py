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

from monitor.config import FieldWeights, RuleClause, StoryConfig, StoryRules
from monitor.text import content_lemmas, fold, inflections, sentences

# Inflectional endings every term accepts (genitive -s of names, plural -n/-en, adjectival -er ...).
_SUFFIXES = ("", "s", "es", "n", "en", "e", "er", "ern", "ns", "ens", "em")
_SUFFIX_RE = "(?:" + "|".join(s for s in _SUFFIXES if s) + ")?"
# A closed compound needs at least this many letters after the term (Gipfel|ort, not Trump|f).
_MIN_COMPOUND_TAIL = 3
_MIN_COMPOUND_HEAD = 3
_WORD = re.compile(r"[a-z0-9]+")


# --- documents -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Document:
    """An item prepared once for all stories: folded text with sentence offsets (title = sentence 0)."""

    sentences: list[str]  # original sentences; [0] is the title
    folded: str
    starts: list[int]  # offset of each sentence in ``folded``
    _word_starts: list[int] | None = None
    _lemmas: Counter[str] | None = None

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
    """All term groups of a story as one regular expression over folded text."""

    groups: list[str]
    regex: re.Pattern[str]
    exact: dict[str, list[tuple[int, str]]]  # folded form -> (group index, term)
    prefixes: list[tuple[str, int, str]]  # (folded stem, group, term), longest first
    heads: list[tuple[str, int, str]]  # (folded tail, group, term), longest first
    phrases: list[tuple[re.Pattern[str], int, str]]
    excluded: dict[int, frozenset[str]]  # group -> folded words (with endings) that never count

    @classmethod
    def build(cls, term_groups: dict[str, list[str]]) -> CompiledTerms:
        groups = list(term_groups)
        plain_words = [
            t.lstrip("*")
            for terms in term_groups.values()
            for t in terms
            if not t.startswith(("!", "=")) and " " not in t
        ]
        forms_of = inflections(plain_words)
        exact: dict[str, list[tuple[int, str]]] = {}
        prefixes: list[tuple[str, int, str]] = []
        heads: list[tuple[str, int, str]] = []
        phrases: list[tuple[re.Pattern[str], int, str]] = []
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
                elif term.startswith("="):
                    add_exact(fold(term[1:].strip()), gi, term)
                elif " " in term.strip():
                    words = fold(term).split()
                    pattern = r"\s+".join(re.escape(w) + _SUFFIX_RE for w in words)
                    phrases.append((re.compile(rf"(?<![a-z0-9]){pattern}(?![a-z0-9])"), gi, term))
                else:
                    word = term.lstrip("*")
                    base = fold(word)
                    for form in forms_of[word] | {base + s for s in _SUFFIXES}:
                        add_exact(form, gi, term)
                    prefixes.append((base, gi, term))
                    if term.startswith("*"):
                        heads.append((base, gi, term))
        prefixes.sort(key=lambda p: -len(p[0]))
        heads.sort(key=lambda p: -len(p[0]))
        alternatives = []
        if exact:
            forms = sorted(exact, key=lambda f: (-len(f), f))
            alternatives.append("(?:" + "|".join(re.escape(f) for f in forms) + ")")
        if prefixes:
            stems = sorted({p[0] for p in prefixes}, key=lambda f: (-len(f), f))
            alternatives.append(
                "(?:" + "|".join(re.escape(s) for s in stems) + f")[a-z]{{{_MIN_COMPOUND_TAIL},}}"
            )
        if heads:
            tails = sorted({h[0] for h in heads}, key=lambda f: (-len(f), f))
            alternatives.append(
                f"[a-z]{{{_MIN_COMPOUND_HEAD},}}?(?:"
                + "|".join(re.escape(t) for t in tails)
                + ")"
                + _SUFFIX_RE
            )
        body = "|".join(alternatives) or "(?!x)x"
        regex = re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])")
        return cls(
            groups,
            regex,
            exact,
            prefixes,
            heads,
            phrases,
            {g: frozenset(words) for g, words in excluded.items()},
        )

    def _resolve(self, word: str) -> list[tuple[int, str]]:
        found = self.exact.get(word)
        if found is not None:
            return found
        for stem, _, _ in self.prefixes:
            if word.startswith(stem) and len(word) - len(stem) >= _MIN_COMPOUND_TAIL:
                return _one_per_group((g, t) for s, g, t in self.prefixes if s == stem)
        for tail, _, _ in self.heads:
            stripped = word
            for suffix in sorted(_SUFFIXES, key=len, reverse=True):
                if suffix and word.endswith(tail + suffix):
                    stripped = word[: -len(suffix)]
                    break
            if stripped.endswith(tail) and len(stripped) - len(tail) >= _MIN_COMPOUND_HEAD:
                return _one_per_group((g, t) for s, g, t in self.heads if s == tail)
        return []

    def hits(self, folded: str) -> list[tuple[int, int, str]]:
        """(offset, group index, term) for every occurrence of a term."""
        out: list[tuple[int, int, str]] = []
        for m in self.regex.finditer(folded):
            word = m.group()
            for gi, term in self._resolve(word):
                if word in self.excluded.get(gi, ()):
                    continue
                out.append((m.start(), gi, term))
        seen: set[tuple[int, int]] = set()
        for pattern, gi, term in self.phrases:
            for m in pattern.finditer(folded):
                if (m.start(), gi) not in seen:  # 'ungarische(n) Hauptstadt': one hit per place
                    seen.add((m.start(), gi))
                    out.append((m.start(), gi, term))
        return out


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


# --- the matcher ---------------------------------------------------------------------------------


def _rules_for(story: StoryConfig) -> StoryRules:
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
        self.terms = CompiledTerms.build({k: list(v) for k, v in self.rules.terms.items()})
        index = {name: i for i, name in enumerate(self.terms.groups)}

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
        found = {gi for _, gi, _ in self.terms.hits(doc.folded)}
        if not found:
            return False
        if self.requires and found.intersection(self.requires):
            return True
        return any(found.intersection(c.groups) for c in self.clauses)

    # -- matching ---------------------------------------------------------------------------------

    def match(
        self, title: str, text: str, published: datetime | None = None, *, remember: bool = True
    ) -> MatchResult:
        """Score one item. ``published`` is None when the feed gave no date (no background check).
        A matched item is added to the story state unless ``remember`` is false."""
        doc = prepare(title or "", text or "")
        hits = self.terms.hits(doc.folded)
        story_id = self.story.id
        if not hits:
            return MatchResult(story_id, False, 0.0, (), (), reason="no story terms")
        by_sentence: dict[int, set[int]] = {}
        present: set[int] = set()
        for pos, gi, _term in hits:
            by_sentence.setdefault(doc.sentence_of(pos), set()).add(gi)
            present.add(gi)
        fields = self.rules.fields
        score = 0.0
        held: list[str] = []
        points: list[tuple[str, float]] = []
        evidence_sentences: set[int] = set()
        for c in self.clauses:
            result = self._evaluate(c, doc, hits, by_sentence, present)
            if result is None:
                continue
            in_title, sents = result
            added = c.weight * (fields.title if in_title else fields.body)
            score += added
            held.append(c.label)
            points.append((f"{c.label} ({'title' if in_title else 'body'})", added))
            evidence_sentences.update(sents)
        vetoes = [c.label for c in self.excludes if self._evaluate(c, doc, hits, by_sentence, present)]
        rule_score = score
        base_sim: float | None = None
        story_sim: float | None = None
        sim = self.similarity
        if sim is not None and (not self.requires or present.intersection(self.requires)):
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
        matched = score >= threshold and not vetoes and not background
        if not evidence_sentences:
            # Similarity-only matches: show where the story's terms appear.
            evidence_sentences = {doc.sentence_of(pos) for pos, _, _ in hits}
        evidence = tuple(doc.sentences[i] for i in sorted(evidence_sentences)[:5])
        terms = tuple(dict.fromkeys(term for _, _, term in sorted(hits)))
        if vetoes:
            reason = f"excluded by {', '.join(vetoes)}"
        elif background:
            reason = "background: published long before the story started"
        elif matched:
            reason = f"score {score:g} >= threshold {threshold:g}"
        else:
            reason = f"score {score:g} < threshold {threshold:g}"
        if matched and remember and rule_score >= threshold:
            self.remember(title, text, published)
        return MatchResult(
            story_id,
            matched,
            round(score, 3),
            terms,
            evidence,
            tuple(held),
            reason,
            None if base_sim is None else round(base_sim, 3),
            None if story_sim is None else round(story_sim, 3),
            background,
            tuple((label, round(p, 3)) for label, p in points),
        )

    def _evaluate(
        self,
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
