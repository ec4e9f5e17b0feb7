"""Sentence analysis and the baseline model. Pure functions over strings.

A sentence is reduced to what a fact is made of in German news: content lemmas (stop words and
reporting verbs removed, compounds split into parts), likely names (actors, places), numbers and
dates, change-of-state cues (abgesagt, verschoben, auf Eis gelegt, Sanktionen verhängt, ...) and
whether it is background (pluperfect, "bereits im August"). The baseline model is the same
analysis over the baseline article, plus its vocabulary for fast coverage look-ups.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Any

from monitor.text import TOKEN_CACHE, fold, lemma, sentences, unfold

# Function words and the vocabulary of reporting itself ("sagte", "laut", "demnach"): a sentence
# that differs from the baseline only in these states nothing new. Folded lemmas.
STOPWORDS = frozenset(
    [
        "aber",
        "ab",
        "als",
        "also",
        "am",
        "an",
        "auch",
        "auf",
        "aus",
        "bei",
        "beim",
        "bis",
        "da",
        "dabei",
        "dadurch",
        "dafuer",
        "dagegen",
        "daher",
        "damit",
        "dann",
        "daran",
        "darauf",
        "darin",
        "darueber",
        "darum",
        "das",
        "dass",
        "dem",
        "den",
        "denen",
        "denn",
        "der",
        "deren",
        "des",
        "dessen",
        "die",
        "dies",
        "diese",
        "dieser",
        "dieses",
        "doch",
        "dort",
        "du",
        "durch",
        "ein",
        "eine",
        "einem",
        "einen",
        "einer",
        "eines",
        "er",
        "es",
        "etwa",
        "euch",
        "fuer",
        "gegen",
        "gegenueber",
        "hier",
        "ich",
        "ihm",
        "ihn",
        "ihnen",
        "ihr",
        "ihre",
        "ihrem",
        "ihren",
        "ihrer",
        "im",
        "in",
        "ins",
        "ist",
        "ja",
        "je",
        "jedoch",
        "jener",
        "jetzt",
        "kann",
        "man",
        "mit",
        "nach",
        "neben",
        "nun",
        "nur",
        "ob",
        "oder",
        "ohne",
        "sehr",
        "sein",
        "seine",
        "seinem",
        "seinen",
        "seiner",
        "seit",
        "sich",
        "sie",
        "sind",
        "so",
        "soll",
        "sollen",
        "solle",
        "sollte",
        "sowie",
        "statt",
        "ueber",
        "um",
        "und",
        "uns",
        "unser",
        "unter",
        "vom",
        "von",
        "vor",
        "waehrend",
        "war",
        "waren",
        "was",
        "weil",
        "welche",
        "welcher",
        "wenn",
        "wer",
        "wie",
        "wieder",
        "wir",
        "wird",
        "wo",
        "wurde",
        "wurden",
        "zu",
        "zum",
        "zur",
        "zwar",
        "zwischen",
        "haben",
        "hat",
        "hatte",
        "hatten",
        "werden",
        "worden",
        "wuerde",
        "wuerden",
        "koennen",
        "koennte",
        "muessen",
        "muss",
        "duerfen",
        "moegen",
        "wollen",
        "will",
        "wolle",
        "wollte",
        "mehr",
        "schon",
        "noch",
        "bereits",
        "zudem",
        "ebenfalls",
        "sowie",
        "indes",
        "unterdessen",
        "demnach",
        "zufolge",
        "laut",
        "gestern",
        "heute",
        "morgen",
        "derzeit",
        "zuletzt",
        "zuvor",
        "dazu",
        "davon",
        "damals",
        "inzwischen",
        "immer",
        "erst",
        "einmal",
        "etwas",
        "viel",
        "viele",
        "vielen",
        "alle",
        "allen",
        "aller",
        "alles",
        "anderen",
        "andere",
        "anderer",
        "beide",
        "beiden",
        "ganz",
        "gar",
        "selbst",
        "eigentlich",
        "offenbar",
        "angeblich",
        "bisher",
        "bislang",
        "weiter",
        "weitere",
        "weiteren",
        "sagen",
        "erklaeren",
        "mitteilen",
        "berichten",
        "betonen",
        "schreiben",
        "heissen",
        "melden",
        "aeussern",
        "sprechen",
        "zitieren",
        "verweisen",
        "hinweisen",
        "fragen",
        "antworten",
        "erzaehlen",
        "meinen",
        "glauben",
        "denken",
        "verlauten",
        "lassen",
        "geben",
        "gehen",
        "kommen",
        "machen",
        "stehen",
        "sehen",
        "bleiben",
        "herr",
        "frau",
        "us",
        "uhr",
        "mal",
        "mals",
        "neue",
        "neuen",
        "neuer",
        "neues",
        "neu",
    ]
)

# Change of state: the words in which German news reports that something happened or stopped.
# Matched on folded text at a word boundary; each has a label shown in explanations.
_CUES: tuple[tuple[str, str], ...] = (
    ("abgesagt", r"abgesagt|absage\b|sagt\w* .{0,40}\bab\b|abzusagen"),
    ("verschoben", r"verschoben|verschieb\w*|vertagt|aufgeschoben"),
    ("auf Eis", r"auf eis\b|auf (?:unbestimmte|spaetere) zeit\b"),
    ("findet nicht statt", r"(?:findet|finden|wird|werde) (?:\w+ ){0,3}nicht statt|nicht stattfinden"),
    ("geplatzt", r"geplatzt|platzen\b|gescheitert|scheitert|abgebrochen|bricht .{0,30}\bab\b"),
    ("gestoppt", r"gestoppt|stoppt\b|ausgesetzt|setzt .{0,30}\baus\b|eingestellt"),
    ("genehmigt", r"genehmig\w*|freigegeben|freigabe erteilt|gruenes licht|zugestimmt\b"),
    ("abgelehnt", r"abgelehnt|lehnt\w* .{0,40}\bab\b|absage erteilt|verweigert"),
    ("zugesagt", r"zugesagt|sagt\w* .{0,40}\bzu\b|zusage\b"),
    ("keine Zusage", r"keine zusage|keine (?:\w+ ){0,2}(?:liefer|freigabe)|nicht liefern"),
    ("Sanktionen", r"sanktion\w*|strafmassnahm\w*|verhaengt"),
    ("Einigung", r"einigung\b|geeinigt|einigen sich|vereinbart\w*|abkommen\b|unterzeichnet"),
    ("beschlossen", r"beschlossen|beschliesst|entschieden|entscheidet|entscheidung\b"),
    ("telefoniert", r"telefonier\w*|telefonat\w*|telefongespraech\w*"),
    ("getroffen", r"trafen sich|trifft sich|kamen .{0,40}zusammen\b"),
    ("Kehrtwende", r"kehrtwende|umkehr|rueckzieher|macht einen rueckzieher"),
    ("zurueckgetreten", r"zurueckgetreten|ruecktritt|tritt .{0,30}zurueck"),
    ("Ausnahme", r"ausnahme\w*"),
)
_CUE_RES = tuple((label, re.compile(rf"\b(?:{pattern})")) for label, pattern in _CUES)
# Most sentences carry no cue: one search for any of them (an alternation matches where any
# alternative does) spares the 18 separate searches for those, and the result is the same. Every
# alternative starts at a word boundary, tested once before all of them: ~40 % faster.
_ANY_CUE_RE = re.compile(r"\b(?:" + "|".join(pattern for _, pattern in _CUES) + ")")
# Cues that report the same change of state: once "abgesagt" is known, "geplatzt" is not news.
_CUE_FAMILIES = {
    "abgesagt": "off",
    "verschoben": "off",
    "auf Eis": "off",
    "findet nicht statt": "off",
    "geplatzt": "off",
    "gestoppt": "off",
    "genehmigt": "approved",
    "zugesagt": "approved",
    "abgelehnt": "refused",
    "keine Zusage": "refused",
    "Einigung": "agreed",
    "beschlossen": "agreed",
    "telefoniert": "contact",
    "getroffen": "contact",
}


def cue_family(label: str) -> str:
    return _CUE_FAMILIES.get(label, label)


# Background: pluperfect ("hatten sich im August getroffen"), explicit earlier time references.
_BACKGROUND_RE = re.compile(
    r"\b(?:hatte|hatten|hattest|war|waren) (?:\w+ ){0,8}\w+(?:ge\w+t|ge\w+en|iert)\b[^,;:]*$|"
    r"\b(?:bereits|schon) (?:im|am|seit|vor) |\bim (?:januar|februar|maerz|april|mai|juni|juli|august|"
    r"september)\b|\bseit (?:jahren|monaten|langem)\b|\bdamals\b|\bvor (?:jahren|monaten)\b"
)
_NEGATION_RE = re.compile(r"\b(?:kein|keine|keinen|keinem|keiner|nicht|nie|niemals|vorerst keine)\b")
_HYPHEN_RE = re.compile(r"[-‐‑]")
_TOKEN_RE = re.compile(r"[^\W_]+(?:[-‐‑][^\W_]+)*", re.UNICODE)
_NUMBER_RE = re.compile(r"^\d+(?:[.,]\d+)?$")
# Mojibake (UTF-8 read as a one-byte code page: 'fĂŒr', 'PrĂ€sident', 'fÃ¼r', 'â€ž'): a word with a
# non-ASCII capital right after a small letter, or the lead byte of a misread UTF-8 sequence. Such
# words are noise, neither known nor new; without this filter every garbled article looks novel.
_GARBLED_HINT_RE = re.compile(r"[\u00c0-\u00de\u0100-\u017f\u20ac]")
_MISREAD_CONTINUATION = frozenset("\u20ac\u2122\u0152\u0153\u0160\u0161\u017d\u017e\u0178")


def is_garbled(word: str) -> bool:
    """True for a word that is mojibake rather than language."""
    if "\u00e2\u20ac" in word:
        return True
    for a, b in pairwise(word):
        if a.islower() and b.isupper() and not b.isascii():
            return True
        if a in "\u00c2\u00c3\u0102" and ("\u0080" <= b <= "\u00bf" or b in _MISREAD_CONTINUATION):
            return True
    return False


def _without_garbled(text: str) -> str:
    if not _GARBLED_HINT_RE.search(text):
        return text
    return " ".join(w for w in text.split() if not is_garbled(w))


_NUMBER_WORDS = frozenset(
    [
        "zwei",
        "drei",
        "vier",
        "fuenf",
        "sechs",
        "sieben",
        "acht",
        "neun",
        "zehn",
        "elf",
        "zwoelf",
        "zwanzig",
        "dreissig",
        "hundert",
        "tausend",
        "millionen",
        "milliarden",
        "prozent",
    ]
)
_WEEKDAYS = frozenset(["montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonntag"])


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@lru_cache(maxsize=TOKEN_CACHE)
def _parts(token: str) -> tuple[str, ...]:
    """Folded lemma parts of one token: hyphenated compounds split into their lemmatised parts."""
    pieces = _HYPHEN_RE.split(token)
    out = []
    for piece in pieces:
        if not piece:
            continue
        out.append(lemma(piece))
    return tuple(p for p in out if p)


@lru_cache(maxsize=TOKEN_CACHE)
def compound_parts(term: str) -> tuple[str, ...]:
    """Split a closed German compound at a point where both sides are words of length >= 4
    ('gipfeltreffen' -> ('gipfel', 'treffen')), linking -s- allowed. Empty when none is found."""
    if len(term) < 10 or not term.isalpha():
        return ()
    from monitor import lexicon

    def known(word: str) -> str | None:
        # Terms are folded ('gespraech'): try the word with its umlauts back as well.
        for candidate in (word, unfold(word)):
            if _is_known(candidate):
                return candidate
        return None

    for i in range(5, len(term) - 4):
        head, tail = term[:i], term[i:]
        for h in (head, head[:-1] if head.endswith("s") and len(head) > 4 else None):
            if h and known(h):
                tail_word = known(tail)
                if tail_word:
                    return (fold(h), fold(lexicon.lemmatize(tail_word)))
    return ()


_KEY_STEPS = (("sch", "sh"), ("w", "v"), ("z", "s"), ("y", "i"), ("ij", "i"), ("ii", "i"), ("ck", "k"))


@lru_cache(maxsize=TOKEN_CACHE)
def name_key(term: str) -> str:
    """A spelling key for transliterated names: 'selenskyj', 'selenski', 'zelensky' -> 'selenski';
    'wolodymyr' -> 'volodimir'; 'lawrow' and 'lavrov' -> 'lavrov'."""
    key = term
    for old, new in _KEY_STEPS:
        key = key.replace(old, new)
    return key.rstrip("j")


def _near(a: str, b: str) -> bool:
    """One edit apart (names of six letters or more): 'wolodomir' ~ 'wolodimir'."""
    if a == b:
        return True
    if min(len(a), len(b)) < 6 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence reduced to the material of facts."""

    text: str
    terms: frozenset[str]  # content lemmas, folded (compound parts included)
    nouns: frozenset[str]  # the terms that are nouns (capitalised), names included
    names: frozenset[str]  # capitalised words inside the sentence that look like names
    numbers: frozenset[str]  # digits, number words, weekdays
    cues: tuple[str, ...]  # change-of-state cue labels
    negated: bool
    background: bool

    @property
    def size(self) -> int:
        return len(self.terms)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled by the parse workers (see monitor.parse_pool): the constructor's arguments unpickle
        # ~20 % faster than the default state protocol of a slotted dataclass.
        fields = (self.text, self.terms, self.nouns, self.names, self.numbers, self.cues)
        return (Sentence, (*fields, self.negated, self.background))


@lru_cache(maxsize=TOKEN_CACHE)
def _is_known(word: str) -> bool:
    """simplemma's dictionary look-up, cached (it decodes dictionary records on every call)."""
    from monitor import lexicon

    return lexicon.is_known(word)


@lru_cache(maxsize=TOKEN_CACHE)
def _lemma_is_noun(token: str) -> bool:
    """For the first word of a sentence (capitalised anyway): is its dictionary form a noun?"""
    from monitor import lexicon

    return lexicon.lemmatize(token)[:1].isupper()


_NO_FACTS = ()


@lru_cache(maxsize=TOKEN_CACHE)
def _token_facts(
    token: str, first: bool
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None:
    """What one token adds to its sentence's analysis: (numbers, terms, nouns, names), each in
    the order ``analyse`` adds them; None for nothing. ``first``: the sentence's first word
    (capitalised anyway: its dictionary form decides whether it is a noun; never a name)."""
    if _NUMBER_RE.match(token):
        return ((token.replace(",", "."),), _NO_FACTS, _NO_FACTS, _NO_FACTS)
    parts = _parts(token)
    if not parts:
        return None
    # German capitalises nouns: facts are carried by nouns and names, colour by the rest.
    pieces = _HYPHEN_RE.split(token)
    last = pieces[-1]
    is_noun = last[:1].isupper() if not first or len(parts) > 1 else _lemma_is_noun(token)
    if len(parts) == 1:
        base = parts[0]
        if base in STOPWORDS or len(base) < 3:
            return None
        if base in _NUMBER_WORDS or base in _WEEKDAYS:
            return ((base,), _NO_FACTS, _NO_FACTS, _NO_FACTS)
        found: tuple[str, ...] = (base,)
    else:
        joined = "-".join(parts)
        found = (joined, *(p for p in parts if p not in STOPWORDS and len(p) >= 3))
    names: list[str] = []
    if not first and token[:1].isupper():
        if len(parts) == 1:
            if not _is_known(token):
                names.append(parts[0])
        else:  # 'Druschba-Pipeline': the name is the part no dictionary knows, not the compound
            for piece, part in zip(pieces, parts, strict=False):
                if piece[:1].isupper() and len(part) >= 3 and not _is_known(piece):
                    names.append(part)
    return (_NO_FACTS, found, found if is_noun else _NO_FACTS, tuple(names))


# Analysed sentences: ~2.5-3.5 KB each with their sets at news lengths (10-20 words), ~12 MB when
# full. What repeats comes close together (the same wire copy in several feeds of one poll, a
# development's sentences diffed again and again); measured on a first poll of 2,000 feeds with five
# stories: hit rate 31 % with this cap, 32 % with 8,192, 41 % with 100,000 (~150 MB). A "sentence"
# longer than CACHED_SENTENCE_MAX characters (a text without punctuation, a table) is analysed
# without the cache: what the cache holds stays bounded in bytes, not only in entries.
SENTENCE_CACHE = 4_096
CACHED_SENTENCE_MAX = 600


def analyse(text: str) -> Sentence:
    """Analyse one sentence (cached: wire copies repeat sentences verbatim)."""
    if len(text) > CACHED_SENTENCE_MAX:
        return _analyse(text)
    return _analyse_cached(text)


def _analyse(text: str) -> Sentence:
    text = _nfc(text.strip())
    folded = fold(text)
    terms: set[str] = set()
    nouns: set[str] = set()
    names: set[str] = set()
    numbers: set[str] = set()
    # Per token from a cache (the vocabulary of news repeats), added in token order as before: the
    # sets' iteration order (and float sums over it downstream) stays the same.
    for index, token in enumerate(_TOKEN_RE.findall(_without_garbled(text))):
        facts = _token_facts(token, index == 0)
        if facts is None:
            continue
        token_numbers, token_terms, token_nouns, token_names = facts
        if token_numbers:
            numbers.update(token_numbers)
        if token_terms:
            terms.update(token_terms)
        if token_nouns:
            nouns.update(token_nouns)
        if token_names:
            names.update(token_names)
    cues = (
        tuple(label for label, pattern in _CUE_RES if pattern.search(folded))
        if _ANY_CUE_RE.search(folded)
        else ()
    )
    return Sentence(
        text=text,
        terms=frozenset(terms),
        nouns=frozenset(nouns),
        names=frozenset(names),
        numbers=frozenset(numbers),
        cues=cues,
        negated=bool(_NEGATION_RE.search(folded)),
        background=bool(_BACKGROUND_RE.search(folded)),
    )


_analyse_cached = lru_cache(maxsize=SENTENCE_CACHE)(_analyse)


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, without bylines, photo credits and one-word lines."""
    out = []
    for sentence in sentences(_nfc(text)):
        sentence = sentence.strip(" \t|·•-–—")
        if len(sentence) < 12 or (len(sentence) < 60 and sum(ch.isalpha() for ch in sentence) < 8):
            continue
        out.append(sentence)
    return out


# Entries of each of a Reference's two look-up caches (emptied when full): ~1.5-2.5 MB per story
# when both are full. A baseline's reference lives as long as the daemon, in the writer and in every
# parse worker.
_NAMED_MAX = 8_192


@dataclass(slots=True)
class Reference:
    """What is already known: the vocabulary and the sentences it comes from."""

    vocab: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)
    cues: set[str] = field(default_factory=set)  # cue families (see cue_family)
    sentences: list[Sentence] = field(default_factory=list)
    name_keys: set[str] = field(default_factory=set)
    # knows_name's and covers's answers for this content (emptied by ``add``): the same words are
    # asked about sentence after sentence (measured on the bench's first poll with 5 stories:
    # 160,000 and 220,000 calls).
    _named: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)
    _covered: dict[str, float] = field(default_factory=dict, repr=False, compare=False)  # covers's

    def add(self, sentence: Sentence) -> None:
        if self._named:
            self._named.clear()
        if self._covered:
            self._covered.clear()
        self.sentences.append(sentence)
        self.vocab.update(sentence.terms)
        for term in sentence.terms:  # a known compound covers its parts ('Gipfeltreffen' -> 'Gipfel')
            self.vocab.update(term.split("-") if "-" in term else compound_parts(term))
        self.names.update(sentence.names)
        self.name_keys.update(name_key(n) for n in sentence.names)
        self.numbers.update(sentence.numbers)
        self.cues.update(cue_family(c) for c in sentence.cues)

    def extend(self, items: Iterable[Sentence]) -> None:
        for sentence in items:
            self.add(sentence)

    def copy(self) -> Reference:
        return Reference(
            set(self.vocab),
            set(self.names),
            set(self.numbers),
            set(self.cues),
            list(self.sentences),
            set(self.name_keys),
        )

    def knows_name(self, name: str) -> bool:
        """A name is known in another transliteration (Selenskyj/Selenski), in the genitive
        (Putins) or one letter off (Wolodomir/Wolodimir)."""
        known = self._named.get(name)
        if known is None:
            if len(self._named) >= _NAMED_MAX:  # a baseline's reference lives as long as the daemon
                self._named.clear()
            known = self._named[name] = self._knows_name(name)
        return known

    def _knows_name(self, name: str) -> bool:
        if name in self.names or name in self.vocab:
            return True
        keys = [name_key(name)]
        if name.endswith("s") and len(name) > 4:
            keys.append(name_key(name[:-1]))
        if any(k in self.name_keys for k in keys):
            return True
        return any(_near(k, known) for k in keys if len(k) >= 6 for known in self.name_keys)

    def covers(self, term: str) -> float:
        """1.0 when the term is known, 0.5 when one part of a compound is, else 0.0."""
        covered = self._covered.get(term)
        if covered is None:
            if len(self._covered) >= _NAMED_MAX:
                self._covered.clear()
            covered = self._covered[term] = self._covers(term)
        return covered

    def _covers(self, term: str) -> float:
        if term in self.vocab:
            return 1.0
        if term.endswith("s") and len(term) > 5 and (term[:-1] in self.vocab or term[:-2] in self.vocab):
            return 1.0  # a genitive the lemmatiser left alone ('Russlands', 'Gipfeltreffens')
        parts = term.split("-") if "-" in term else compound_parts(term)
        if parts:
            known = sum(1 for p in parts if p in self.vocab)
            if known == len(parts):
                return 1.0
            if known:
                return 0.5
        return 0.0


@dataclass(slots=True)
class BaselineModel:
    """The story as the user knows it: sentences, vocabulary, actors, numbers, key terms."""

    story_id: str
    text: str
    sentences: list[Sentence]
    reference: Reference
    key_terms: frozenset[str]  # salient terms: a sentence sharing none is off the story's topic
    novelty_threshold: float

    @property
    def actors(self) -> frozenset[str]:
        return frozenset(self.reference.names)


DEFAULT_NOVELTY_THRESHOLD = 0.6


def build_baseline(
    story_id: str, text: str | None, *, novelty_threshold: float | None = None
) -> BaselineModel:
    """Analyse the baseline article once per story (at start-up)."""
    text = text or ""
    analysed = [analyse(s) for s in split_sentences(text)]
    reference = Reference()
    reference.extend(analysed)
    counts: Counter[str] = Counter()
    for sentence in analysed:
        counts.update(sentence.terms)
    key_terms = {t for t, n in counts.items() if n >= 2} | set(reference.names)
    return BaselineModel(
        story_id=story_id,
        text=text,
        sentences=analysed,
        reference=reference,
        key_terms=frozenset(key_terms),
        novelty_threshold=DEFAULT_NOVELTY_THRESHOLD if novelty_threshold is None else novelty_threshold,
    )
