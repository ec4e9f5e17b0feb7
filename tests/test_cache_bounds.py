"""The match and diff stages' caches stay within their memory budget, however large the vocabulary.

A daemon runs for months and the vocabulary of news never stops growing (names, compounds, typos);
the caches of ``monitor.text`` and ``monitor.diff.model`` live as long as the process. Here they are
filled past their caps with German-like words no dictionary knows and sentences never seen, and
the memory they hold afterwards is measured with tracemalloc (live bytes, not timing).
"""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest

from monitor import text
from monitor.diff import model
from monitor.diff.novelty import score_item

# What the caches may hold when full: README "Performance" (memory of a long-running daemon).
BUDGET_MB = 72

# fmt: off
_SYLLABLES = [
    "kraft", "werk", "um", "bau", "plan", "staats", "sekre", "taer", "haus", "halt", "grenz",
    "schutz", "ver", "tei", "digung", "minis", "terium", "bund", "land", "tags", "wahl", "kampf",
    "gipfel", "treffen", "rakete", "liefer", "ung", "stopp", "zoll", "streit", "energie", "preis",
    "bremse", "schulden", "netz", "ausbau", "rente", "steuer", "wende", "frist", "kosten", "gesetz",
    "vorlage", "kammer", "rat", "amt",
]
# fmt: on

# The caches a word fills: each holds up to text.TOKEN_CACHE entries.
_WORD_CACHES = [
    text.lemma,
    model._parts,
    model.compound_parts,
    model.name_key,
    model._is_known,
    model._lemma_is_noun,
    model._token_facts,
]


def _word(rnd: random.Random) -> str:
    word = "".join(rnd.choice(_SYLLABLES) for _ in range(rnd.randint(3, 4)))
    return word.capitalize() if rnd.random() < 0.6 else word


def _sentences(n: int, seed: int) -> list[str]:
    """Sentences of 10 to 30 words (news lengths and longer), most words never seen before; each
    starts with a new capitalised word (the first word of a sentence has a cache of its own)."""
    rnd = random.Random(seed)
    return [
        f"{_word(rnd).capitalize()} hat am Dienstag {' '.join(_word(rnd) for _ in range(rnd.randint(7, 27)))} "
        "beschlossen."
        for _ in range(n)
    ]


@pytest.mark.slow
def test_word_and_sentence_caches_stay_within_budget() -> None:
    rnd = random.Random(3)
    words = [_word(rnd) for _ in range(text.TOKEN_CACHE + 4_000)]
    sentences = _sentences(model.SENTENCE_CACHE + 1_000, seed=7)
    for cache in [*_WORD_CACHES, model._analyse_cached]:
        cache.cache_clear()
    gc.collect()
    tracemalloc.start()
    try:
        for sentence in sentences:
            model.analyse(sentence)
        for word in words:  # the caches analyse() does not reach on every word
            model.compound_parts(text.fold(word))
            model.name_key(text.fold(word))
            model._lemma_is_noun(word.capitalize())
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The workload went past every cap (else the budget proves nothing) ...
    assert model._analyse_cached.cache_info().currsize == model.SENTENCE_CACHE
    for cache in _WORD_CACHES:
        assert cache.cache_info().currsize == text.TOKEN_CACHE, cache.__name__
    # ... and what stays behind is the caches at their caps, within the budget.
    assert held < BUDGET_MB * 2**20, f"caches hold {held / 2**20:.1f} MB"


def test_a_sentence_too_long_to_cache_is_analysed_all_the_same() -> None:
    """A text without punctuation is one long "sentence": analysed like any other, not cached (the
    cache stays bounded in bytes)."""
    long_one = " ".join(["Die Regierung in Budapest hat den Gipfel abgesagt und"] * 20) + " verschoben."
    assert len(long_one) > model.CACHED_SENTENCE_MAX
    before = model._analyse_cached.cache_info()
    analysed = model.analyse(long_one)
    after = model._analyse_cached.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)  # the cache was not asked
    assert {"budapest", "gipfel", "regierung"} <= analysed.terms
    assert "abgesagt" in analysed.cues and "verschoben" in analysed.cues
    assert analysed == model._analyse(long_one)
    short = "Die Regierung in Budapest hat den Gipfel abgesagt."
    assert model.analyse(short) is model.analyse(short)  # a sentence of news length is cached


def test_a_references_lookup_caches_are_bounded() -> None:
    """A baseline's Reference caches what it answered (``covers``, ``knows_name``); it lives as long
    as the daemon, so each cache is emptied when full, and answers the same afterwards."""
    baseline = model.build_baseline(
        "s", "Der Gipfel in Budapest ist abgesagt. Trump und Putin treffen sich nicht."
    )
    reference = baseline.reference
    rnd = random.Random(5)
    words = list(dict.fromkeys(text.fold(_word(rnd)) for _ in range(model._NAMED_MAX + 2_000)))
    assert len(words) > model._NAMED_MAX
    for word in words:
        reference.covers(word)
        reference.knows_name(word)
    assert 0 < len(reference._covered) < len(words)
    assert 0 < len(reference._named) < len(words)
    assert len(reference._covered) <= model._NAMED_MAX and len(reference._named) <= model._NAMED_MAX
    # the answers after emptying are the answers before
    assert reference.covers("budapest") == 1.0 and reference.knows_name("putins")
    assert not reference.knows_name(words[0]) and reference.covers(words[0]) < 1.0
    # and through the scoring path the diff uses
    for sentence in _sentences(200, seed=11):
        score_item([(model.analyse(sentence), False)], reference, baseline.key_terms)
    assert len(reference._covered) <= model._NAMED_MAX
