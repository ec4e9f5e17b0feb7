"""monitor.lexicon: simplemma's German dictionary from memory-mapped tries gives simplemma's answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import simplemma

from monitor import lexicon, text

WORDS = [
    "Gipfels",
    "Treffens",
    "Treffen",
    "trifft",
    "traf",
    "Selenskyj",
    "Selenski",
    "Budapest-Gipfel",
    "Tomahawk-Raketen",
    "Friedensverhandlungen",
    "Außenminister",
    "Waffenstillstandsabkommen",
    "Gipfeltreffen",
    "liefen",
    "Häuser",
    "Kanzlerin",
    "Präsidenten",
    "sagte",
    "Gesprächen",
    "Raketen",
    "Ukraine-Krieg",
    "ÖSTERREICH",
    "über",
    "Straße",
    "2025",
    "Orbán",
    "x",
    "Zelenskys",
    "Verhandlungsrunde",
    "Bürgermeisterwahl",
    "unbekanntesWortxyz",
]


def test_lemmatize_and_is_known_equal_simplemma() -> None:
    for word in WORDS:
        assert lexicon.lemmatize(word) == simplemma.lemmatize(word, lang="de"), word
        assert lexicon.is_known(word) == simplemma.is_known(word, lang="de"), word


def test_forms_of_equals_a_scan_of_the_dictionary() -> None:
    lemmas = ["Treffen", "treffen", "Gipfel", "Rakete", "laufen", "Selenskyj"]
    expected: dict[bytes, set[bytes]] = {lem.encode(): set() for lem in lemmas}
    for form, lem in lexicon._dictionary_pairs():
        if lem in expected:
            expected[lem].add(form)
    assert lexicon.forms_of(lemmas) == expected
    assert b"trifft" in expected[b"treffen"]  # the check is not vacuous
    assert text.inflections(["Treffen"])["Treffen"] >= {"treffen", "trifft", "getroffen"}


def test_build_writes_both_tries(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "monitor.lexicon", str(tmp_path)], check=True, timeout=300)
    forms, lemmas = lexicon._paths(tmp_path)
    assert forms.stat().st_size > 1_000_000 and lemmas.stat().st_size > 1_000_000
    assert not list(tmp_path.glob("*.tmp"))
