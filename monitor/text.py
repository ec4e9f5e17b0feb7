"""German text primitives shared by the match and diff stages. Pure functions over strings.

Normalisation folds what German news spells in several ways: case, umlauts and ß (ä/ae, ö/oe,
ü/ue, ß/ss), Unicode compatibility forms, soft hyphens and typographic quotes/dashes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

_FOLD = str.maketrans(
    {
        "ä": "ae",
        "ö": "oe",
        "ü": "ue",
        "ß": "ss",
        "ẞ": "ss",
        "\u00ad": None,  # soft hyphen
        "\u200b": None,  # zero-width space
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u201e": '"',
        "\u201c": '"',
        "\u201d": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2039": "'",
        "\u203a": "'",
        "\u201a": "'",
        "\u2018": "'",
        "\u2019": "'",
    }
)
_WORD_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Sentence ends: . ! ? followed by space and an upper-case letter, quote or digit; or a line break.
_SENTENCE_RE = re.compile(r"(?<=[.!?…])[\"'“”„»«)]*\s+(?=[\"'“”„»«(]*[A-ZÄÖÜ0-9])|\n+")
# The same boundary within one paragraph, starting at the punctuation mark: a pattern that opens
# with a character class lets the regex engine skip ahead quickly (about 2x faster).
_BOUNDARY_RE = re.compile(r"[.!?…]([\"'“”„»«)]*)\s+(?=[\"'“”„»«(]*[A-ZÄÖÜ0-9])")
_ABBREV_END = re.compile(
    r"(?:\b(?:z\.B|u\.a|d\.h|bzw|ca|Dr|Prof|Nr|St|vgl|sog|usw|etc|Mio|Mrd|Jh|Abs|Art|Hr|Fr|gem|inkl|evtl|ggf)\.|\b[A-Z]\.|\b\d{1,2}\.)$"
)


# Characters XML 1.0 does not allow in a document, escaped or not: control characters other than
# tab and line breaks, lone surrogates, U+FFFE/U+FFFF.
NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_chars(text: str) -> str:
    """``text`` with the characters XML does not allow replaced by U+FFFD."""
    return NOT_XML_CHAR.sub("\ufffd", text)


def unfold(word: str) -> str:
    """A folded word with its umlauts back ('gespraech' -> 'gespräch'), for dictionary look-ups."""
    return word.replace("ae", "ä").replace("oe", "ö").replace("ue", "ü")


# Small on purpose: the hits are the same texts folded again by the next story or stage within one
# feed's poll (the writer matches story after story over a feed's items: 1,024 entries are a title
# and a text each for 512 items); a large cache of whole article texts was tens of MB that the
# daemon never gave back.
@lru_cache(maxsize=1024)
def fold(text: str) -> str:
    """Case-fold and spell out umlauts/ß so 'Selenskyj', 'SELENSKYJ' and 'Gipfel' compare plainly.

    Idempotent: ``fold(fold(x)) == fold(x)``.
    """
    if text.isascii():
        return text.lower()  # NFKC/NFKD are the identity on ASCII, and nothing in _FOLD is ASCII
    text = unicodedata.normalize("NFKC", text).lower()
    # Fold umlauts/ß/quotes and strip combining marks (Orbán -> orban) run by run: only non-ASCII
    # runs need it, and a cached per-run mapping keeps a 2,000-character article at microseconds.
    text = _NON_ASCII_RUN.sub(_fold_run, text)
    if text.isascii():
        return text
    # Re-apply: NFKD may expose characters that fold further; lower() of some code points (e.g. 'İ')
    # yields combining marks handled above.
    text = unicodedata.normalize("NFKC", text).lower()
    return _NON_ASCII_RUN.sub(_translate_run, text)


_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")


def _fold_run(m: re.Match[str]) -> str:
    return _fold_run_text(m.group())


def _translate_run(m: re.Match[str]) -> str:
    return m.group().translate(_FOLD)


@lru_cache(maxsize=8192)
def _fold_run_text(run: str) -> str:
    decomposed = unicodedata.normalize("NFKD", run.translate(_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """Folded word tokens; hyphenated compounds stay one token ('budapest-gipfel')."""
    return _WORD_RE.findall(fold(text))


# Caches hold a daemon's memory for as long as it runs, and the vocabulary of news never stops
# growing (names, compounds, typos): every cache of the match and diff stages has a cap that keeps
# what it can hold small (tests/test_cache_bounds.py measures them full). Per-word caches (a
# word's lemma, its facts for the diff, its compound parts, ...): TOKEN_CACHE entries each; the
# seven of them hold ~1.2 KB per word together, ~38 MB when all are full. News vocabulary is
# Zipf-shaped: the words that recur (the ones a cache pays for) are far fewer than that.
TOKEN_CACHE = 32_768


@lru_cache(maxsize=TOKEN_CACHE)
def lemma(word: str) -> str:
    """German lemma of one word (simplemma), folded: 'Gipfels' -> 'gipfel', 'Treffens' -> 'treffen'."""
    from monitor import lexicon

    return fold(lexicon.lemmatize(word))


def sentences(text: str) -> list[str]:
    """Split German news text into sentences (abbreviation-aware, keeps quotes with their sentence)."""
    return list(_sentences(text))


# Small on purpose, like ``fold``'s: matching (``match.prepare``) and the diff
# (``diff.model.split_sentences``) split the same item text one after the other.
@lru_cache(maxsize=64)
def _sentences(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for para in text.split("\n"):
        para = para.strip()
        if not para:
            continue
        start = 0
        for m in _BOUNDARY_RE.finditer(para):
            candidate = para[start : m.end(1)].strip()  # closing quotes stay with the sentence
            if _ends_with_abbreviation(candidate):
                continue
            if candidate:
                out.append(candidate)
            start = m.end()
        tail = para[start:].strip()
        if tail:
            out.append(tail)
    return tuple(out)


def _ends_with_abbreviation(candidate: str) -> bool:
    """``_ABBREV_END`` on the last characters only (a search anchored at ``$`` would scan the whole
    sentence); a leading 'x' keeps a word cut by the slice from looking like a fresh word."""
    tail = candidate[-24:]
    if len(candidate) > 24 and candidate[-25].isalnum():
        tail = "x" + tail
    return _ABBREV_END.search(tail) is not None


# --- morphology for matching -------------------------------------------------------------------

_INFLECTION_CACHE: dict[str, frozenset[str]] = {}
_PENDING: set[str] = set()


def want_inflections(words: Iterable[str]) -> None:
    """Announce words whose inflections will be asked for: the next ``inflections`` call resolves
    them in the same pass over the dictionary (one pass for all stories instead of one each)."""
    _PENDING.update(w for w in words if w not in _INFLECTION_CACHE)


def inflections(words: Iterable[str]) -> dict[str, frozenset[str]]:
    """For each word, the folded surface forms that simplemma's German dictionary lemmatises to the
    same lemma, in either case ('Treffen' -> treffen, treffens, trifft, traf, getroffen, ...).

    A look-up in the dictionary's reverse index (monitor.lexicon) serves any number of words;
    results are cached. A word the dictionary does not know (most names) maps to itself only.
    """
    from monitor import lexicon

    words = list(words)
    missing = {w for w in words if w not in _INFLECTION_CACHE}
    if missing:
        missing |= {w for w in _PENDING if w not in _INFLECTION_CACHE}
        _PENDING.clear()
    if missing:
        raw_lemma = {w: lexicon.lemmatize(w) for w in missing}
        variants = {lem: {lem, lem.lower(), lem[:1].upper() + lem[1:]} for lem in set(raw_lemma.values())}
        found = lexicon.forms_of(v for vs in variants.values() for v in vs)
        by_lemma: dict[str, set[str]] = {fold(lem): set() for lem in raw_lemma.values()}
        for lem, vs in variants.items():
            forms = by_lemma[fold(lem)]
            for variant in vs:
                forms.update(fold(f.decode("utf-8", "replace")) for f in found[variant.encode("utf-8")])
        for w in missing:
            _INFLECTION_CACHE[w] = frozenset(by_lemma[fold(raw_lemma[w])] | {fold(w)})
    return {w: _INFLECTION_CACHE[w] for w in words}


# Function words and news boilerplate that carry no story signal in a similarity vector.
_STOPWORD_TEXT = """
    der die das den dem des ein eine einer eines einem einen und oder aber doch denn sondern
    nicht kein keine keinen keiner auch noch schon nur erst sehr mehr weniger viel viele als wie
    so dass daß ob wenn weil da damit zu zum zur im in ins am an auf aus bei mit nach seit von vor
    vom über unter um durch für gegen ohne bis zwischen während wegen trotz er sie es wir ihr
    ich du man sich sein seine seiner seinen seinem ihre ihren ihrem ihrer ist sind war waren wird
    werden wurde wurden hat haben hatte hatten habe sei seien soll sollen sollte kann können
    könnte müsse muss will wollen wolle dies diese dieser dieses diesen jetzt nun hier dort heute
    gestern morgen dabei dazu darauf daran davon demnach zudem zuletzt bereits immer wieder
    laut sagte sagt erklärte teilte mit hieß heißt berichtet berichtete zufolge angaben
    montag dienstag mittwoch donnerstag freitag samstag sonntag woche wochen tag tage tagen jahr
    jahre jahren monat monate uhr prozent quelle foto bild archivbild dpa afp reuters apa sda
    herr frau mal etwa rund fast gut neue neuen neuer ersten erste zwei drei
"""
STOPWORDS = frozenset(fold(w) for w in _STOPWORD_TEXT.split())

_CONTENT_RE = re.compile(r"[A-Za-zÄÖÜäöüß][\wÄÖÜäöüß]*(?:-[\wÄÖÜäöüß]+)*")


def content_lemmas(text: str) -> list[str]:
    """Folded lemmas of the content words of a text (capitalised words: German nouns and names,
    plus the parts of hyphenated compounds), stop words removed; the input of similarity vectors."""
    out: list[str] = []
    for m in _CONTENT_RE.finditer(text):
        token = m.group()
        if not token[:1].isupper():
            continue
        parts = token.split("-") if "-" in token else [token]
        for part in parts:
            if len(part) < 3:
                continue
            lem = lemma(part)
            if lem not in STOPWORDS and len(lem) >= 3:
                out.append(lem)
    return out
