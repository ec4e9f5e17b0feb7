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

from monitor import text
from monitor.diff import model
from monitor.diff.novelty import score_item

# What the caches may hold when full: README "Performance" (memory of a long-running daemon).
BUDGET_MB = 64

_SYLLABLES = [
    "kraft",
    "werk",
    "um",
    "bau",
    "plan",
    "staats",
    "sekre",
    "taer",
    "haus",
    "halt",
    "grenz",
    "schutz",
    "ver",
    "tei",
    "digung",
    "minis",
    "terium",
    "bund",
    "land",
    "tags",
    "wahl",
    "kampf",
    "gipfel",
    "treffen",
    "rakete",
    "liefer",
    "ung",
    "stopp",
    "zoll",
    "streit",
    "energie",
    "preis",
    "bremse",
    "schulden",
    "netz",
    "ausbau",
    "rente",
    "steuer",
    "wende",
    "frist",
    "kosten",
    "gesetz",
    "vorlage",
    "kammer",
    "rat",
    "amt",
]


def _word(rnd: random.Random) -> str:
    word = "".join(rnd.choice(_SYLLABLES) for _ in range(rnd.randint(3, 4)))
    return word.capitalize() if rnd.random() < 0.6 else word


def _sentences(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [
        f"Der {_word(rnd)} hat am Dienstag {' '.join(_word(rnd) for _ in range(9))} beschlossen."
        for _ in range(n)
    ]


def _caches() -> list:
    return [
        text.lemma,
        model._parts,
        model.compound_parts,
        model.name_key,
        model._is_known,
        model._lemma_is_noun,
        model._token_facts,
        model.analyse,
    ]


def test_word_and_sentence_caches_stay_within_budget() -> None:
    sentences = _sentences(model.SENTENCE_CACHE + 2_000, seed=7)
    for cache in _caches():
        cache.cache_clear()
    gc.collect()
    tracemalloc.start()
    try:
        for sentence in sentences:
            model.analyse(sentence)
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The workload went past the caps (else the budget proves nothing) ...
    assert model.analyse.cache_info().currsize == model.SENTENCE_CACHE
    assert model._token_facts.cache_info().currsize == text.TOKEN_CACHE
    assert text.lemma.cache_info().currsize == text.TOKEN_CACHE
    # ... and what stays behind is the caches at their caps, within the budget.
    assert held < BUDGET_MB * 2**20, f"caches hold {held / 2**20:.1f} MB"


def test_a_references_lookup_caches_are_bounded() -> None:
    """A baseline's Reference caches what it answered (``covers``, ``knows_name``); it lives as long
    as the daemon, so its caches are emptied when full."""
    baseline = model.build_baseline(
        "s", "Der Gipfel in Budapest ist abgesagt. Trump und Putin treffen sich nicht."
    )
    reference = baseline.reference
    for sentence in _sentences(model._NAMED_MAX // 4, seed=11):
        score_item([(model.analyse(sentence), False)], reference, baseline.key_terms)
    assert 0 < len(reference._covered) <= model._NAMED_MAX
    assert 0 < len(reference._named) <= model._NAMED_MAX
    # the distinct words asked about exceeded the cap: the cache was emptied on the way
    asked = {t for s in _sentences(model._NAMED_MAX // 4, seed=11) for t in model.analyse(s).terms}
    assert len(asked) > model._NAMED_MAX
