"""German text primitives: folding, tokens, sentences, lemmas, inflections. Our own texts."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.text import _FOLD, content_lemmas, fold, inflections, lemma, sentences, words


def _reference_fold(text: str) -> str:
    """The original, obviously correct (and slow) definition of ``fold``."""
    text = unicodedata.normalize("NFKC", text)
    text = text.lower().translate(_FOLD)
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", text).lower().translate(_FOLD)


def test_umlauts_and_sharp_s_fold_both_ways() -> None:
    assert fold("Präsidententreffen in Köln") == fold("Praesidententreffen in Koeln")
    assert fold("Gespräch über Zölle") == "gespraech ueber zoelle"
    assert fold("Weißes Haus") == fold("Weisses Haus") == "weisses haus"
    assert fold("STRASSE") == fold("Straße") == fold("STRAẞE")
    assert fold("Marschflugkörper") == fold("MARSCHFLUGKOERPER")


def test_accents_case_hyphens_quotes_and_soft_hyphens() -> None:
    assert fold("Orbán") == fold("ORBAN") == "orban"
    assert fold("Szijjártó") == "szijjarto"
    assert fold("Gip\u00adfel\u00adtreffen") == "gipfeltreffen"
    assert fold("Trump\u2013Putin\u2011Treffen") == "trump-putin-treffen"
    assert fold("„Wir sind bereit!“") == '"wir sind bereit!"'
    assert fold("ﬁnanziert") == "finanziert"  # compatibility ligature (NFKC)


def test_words_keep_hyphenated_compounds_together() -> None:
    assert words("Der Budapest-Gipfel und Tomahawk-Lieferungen.") == [
        "der",
        "budapest-gipfel",
        "und",
        "tomahawk-lieferungen",
    ]


def test_sentences_respect_abbreviations_dates_and_quotes() -> None:
    text = (
        "Am 17. Oktober reist er nach Washington. Dort trifft er u.a. den Präsidenten. "
        "„Wir sind bereit!“ Das sagte Dr. Kovács am Abend.\nNeuer Absatz ohne Punkt"
    )
    assert sentences(text) == [
        "Am 17. Oktober reist er nach Washington.",
        "Dort trifft er u.a. den Präsidenten.",
        "„Wir sind bereit!“",
        "Das sagte Dr. Kovács am Abend.",
        "Neuer Absatz ohne Punkt",
    ]


def test_lemmas_and_inflections_from_the_dictionary() -> None:
    assert lemma("Gipfels") == "gipfel"
    assert lemma("Treffens") == "treffen"
    forms = inflections(["Treffen", "Gipfel", "Sanktion"])
    assert {"treffen", "treffens", "trifft", "traf", "getroffen"} <= forms["Treffen"]
    assert {"gipfel", "gipfels", "gipfeln"} <= forms["Gipfel"]
    assert "sanktionen" in forms["Sanktion"]
    assert inflections(["Kiesewetter"])["Kiesewetter"] == frozenset({"kiesewetter"})


def test_content_lemmas_split_compounds_and_drop_function_words() -> None:
    lemmas = content_lemmas("Der Trump-Putin-Gipfel in Budapest: Die Tomahawk-Lieferungen.")
    assert lemmas == ["trump", "putin", "gipfel", "budapest", "tomahawk", "lieferung"]


@settings(max_examples=400)
@given(st.text())
def test_fold_is_idempotent_and_never_crashes(text: str) -> None:
    once = fold(text)
    assert fold(once) == once


@settings(max_examples=400)
@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_fast_fold_equals_the_reference_definition(text: str) -> None:
    assert fold(text) == _reference_fold(text)


@settings(max_examples=200)
@given(st.text())
def test_words_and_sentences_never_crash(text: str) -> None:
    assert all(w == fold(w) for w in words(text))
    for sentence in sentences(text):
        assert sentence and sentence == sentence.strip()
