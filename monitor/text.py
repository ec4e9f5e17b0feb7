"""German text primitives shared by the match and diff stages. Pure functions over strings.

Normalisation folds what German news spells in several ways: case, umlauts and ß (ä/ae, ö/oe,
ü/ue, ß/ss), Unicode compatibility forms, soft hyphens and typographic quotes/dashes.
"""

from __future__ import annotations

import re
import unicodedata
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
_ABBREV_END = re.compile(
    r"(?:\b(?:z\.B|u\.a|d\.h|bzw|ca|Dr|Prof|Nr|St|vgl|sog|usw|etc|Mio|Mrd|Jh|Abs|Art|Hr|Fr|gem|inkl|evtl|ggf)\.|\b[A-Z]\.|\b\d{1,2}\.)$"
)


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Case-fold and spell out umlauts/ß so 'Selenskyj', 'SELENSKYJ' and 'Gipfel' compare plainly.

    Idempotent: ``fold(fold(x)) == fold(x)``.
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.lower().translate(_FOLD)
    # Strip remaining combining marks (Orbán -> orban, Lavrov's diacritics in transliterations).
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # Re-apply: NFKD may expose characters that fold further; lower() of some code points (e.g. 'İ')
    # yields combining marks handled above.
    return unicodedata.normalize("NFKC", text).lower().translate(_FOLD)


def words(text: str) -> list[str]:
    """Folded word tokens; hyphenated compounds stay one token ('budapest-gipfel')."""
    return _WORD_RE.findall(fold(text))


@lru_cache(maxsize=200_000)
def lemma(word: str) -> str:
    """German lemma of one word (simplemma), folded: 'Gipfels' -> 'gipfel', 'Treffens' -> 'treffen'."""
    import simplemma

    return fold(simplemma.lemmatize(word, lang="de"))


def sentences(text: str) -> list[str]:
    """Split German news text into sentences (abbreviation-aware, keeps quotes with their sentence)."""
    out: list[str] = []
    for para in text.split("\n"):
        para = para.strip()
        if not para:
            continue
        start = 0
        for m in _SENTENCE_RE.finditer(para):
            candidate = para[start : m.start()].strip()
            if _ABBREV_END.search(candidate):
                continue
            if candidate:
                out.append(candidate)
            start = m.end()
        tail = para[start:].strip()
        if tail:
            out.append(tail)
    return out
