"""The diff stage's signals, one at a time, on German texts we wrote (the Graz story of diff_texts):
story start, mojibake, transliterated and genitive names, nouns vs colour, headline vs deep body,
cue families, and clustering by news cycle and subject."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.diff import (
    BACKGROUND_GRACE,
    StoryItem,
    analyse,
    background_before,
    build_baseline,
    diff_items,
)
from monitor.diff.model import Reference, cue_family, is_garbled, name_key, split_sentences
from monitor.diff.novelty import score_sentence
from tests import diff_texts as T
from tests.test_diff import as_known

BASELINE = build_baseline("graz-gipfel", T.BASELINE)
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

# A new fact in the headline and lead: the water works of Südland are placed under sanctions.
SANCTIONS_TITLE = "Nordland verhängt Sanktionen gegen Südlands Wasserwerke"
SANCTIONS = """Nordland hat Sanktionen gegen die staatlichen Wasserwerke Südlands verhängt.
Die Regierung fror Konten der Betreiberfirma Tarnwerk im Wert von 300 Millionen Euro ein.
"""
# The same news from another outlet, a day later, in other words.
SANCTIONS_OTHER_TITLE = "Strafmaßnahmen gegen Tarnwerk: Konten eingefroren"
SANCTIONS_OTHER = """Die Betreiberfirma Tarnwerk kann nicht mehr über ihre Konten verfügen.
Nordland begründet die Sanktionen mit der Verschmutzung der Tarn durch die Wasserwerke.
"""
# Days later, an unrelated new fact of the same story: a mediator is named.
MEDIATOR_TITLE = "Schweizer Diplomatin Lea Frei soll zwischen Berger und Ostrow vermitteln"
MEDIATOR = """Die Schweizer Diplomatin Lea Frei soll im Streit um die Tarn vermitteln.
Frei leitete zuvor die Schlichtung im Rheinstreit; ihr Mandat gilt bis Ende Juni.
"""


def story_item(item_id: int, title: str, text: str, published: datetime) -> StoryItem:
    return StoryItem(
        item_id, f"feed-{item_id}", f"https://example.org/{item_id}", title, text, published, "new"
    )


def test_items_older_than_the_story_start_are_background() -> None:
    early = story_item(1, SANCTIONS_TITLE, SANCTIONS, START - BACKGROUND_GRACE - timedelta(hours=1))
    records, diffs = diff_items(BASELINE, [], [early], story_start=START)
    assert records == [] and diffs[0].verdict == "background"
    # The same report after the start is a development; without a known start it is judged as usual.
    late = story_item(2, SANCTIONS_TITLE, SANCTIONS, START + timedelta(hours=1))
    assert diff_items(BASELINE, [], [late], story_start=START)[1][0].verdict == "new"
    assert diff_items(BASELINE, [], [early])[1][0].verdict == "new"
    assert background_before(START) == START - BACKGROUND_GRACE and background_before(None) is None


def test_mojibake_words_are_neither_known_nor_new() -> None:
    assert is_garbled("fĂŒr") and is_garbled("PrĂ€sidentin") and is_garbled("fÃ¼r")
    assert not any(is_garbled(w) for w in ("Österreich", "Szijjártó", "Orbán", "McLaren", "Tarn-Abkommen"))
    garbled = analyse("Die PrĂ€sidentin sprach fĂŒr Nordland ĂŒber das Abkommen.")
    assert {"nordland", "abkommen"} <= garbled.terms
    assert not any("sident" in t or not t.isascii() for t in garbled.terms), garbled.terms
    # A restatement whose umlauts were mangled in transit states nothing new.
    mangled = T.RESTATEMENT.replace("ä", "Ă€").replace("ü", "ĂŒ")
    records, diffs = diff_items(BASELINE, [], [story_item(1, T.RESTATEMENT_TITLE, mangled, START)])
    assert records == [] and diffs[0].verdict == "restatement"


def test_transliterated_genitive_and_misspelt_names_are_known() -> None:
    reference = Reference()
    reference.extend(analyse(s) for s in ("Der Präsident Wolodimir Selenski reiste nach Graz.",))
    for variant in ("selenskyj", "zelensky", "selenskij", "selenskis", "wolodymyr", "wolodomir"):
        assert reference.knows_name(variant), variant
    assert not reference.knows_name("malenko")
    assert name_key("lawrow") == name_key("lavrov")
    # Südlands president in another spelling and in the genitive: no new actor, no development.
    text = (
        "Ostrows Sprecher bestätigte das Treffen mit Berger in Graz.\nOstrov will im März nach Graz reisen."
    )
    records, _ = diff_items(BASELINE, [], [story_item(1, "Ostrows Reise nach Graz", text, START)])
    assert records == []


def test_new_nouns_weigh_more_than_new_colour() -> None:
    facts = analyse("Berger verhängte ein Einreiseverbot und eine Kontensperre gegen Ostrow.")
    colour = analyse("Berger wirkte ungewöhnlich angespannt, fast schon gereizt und sichtlich müde.")
    key_terms = BASELINE.key_terms
    assert {"einreiseverbot", "kontensperre"} <= facts.nouns
    assert not colour.nouns & {"ungewoehnlich", "angespannt", "gereizt"}
    fact_score = score_sentence(facts, BASELINE.reference, key_terms).score
    colour_score = score_sentence(colour, BASELINE.reference, key_terms).score
    assert fact_score > colour_score


def test_news_in_the_headline_counts_more_than_news_deep_in_the_body() -> None:
    filler = T.RESTATEMENT.strip().split("\n")
    new_fact = (
        "Ostrow verlangt Entschädigung für Fischer und Bauern sowie Garantien für Trinkwasserlieferungen."
    )
    deep = "\n".join([*filler, *filler[:3], new_fact])
    as_headline = "\n".join([new_fact, *filler])
    _, buried = diff_items(BASELINE, [], [story_item(1, T.RESTATEMENT_TITLE, deep, START)])
    _, leading = diff_items(BASELINE, [], [story_item(2, new_fact, as_headline, START)])
    assert leading[0].baseline_score > 2 * buried[0].baseline_score
    assert leading[0].verdict == "new" and buried[0].verdict == "restatement"


def test_cue_families_once_cancelled_another_word_for_it_is_not_a_new_change() -> None:
    assert cue_family("geplatzt") == cue_family("abgesagt") == cue_family("auf Eis")
    assert cue_family("Sanktionen") != cue_family("abgesagt")
    reference = BASELINE.reference.copy()
    reference.add(analyse("Der Gipfel in Graz ist abgesagt."))
    again = score_sentence(analyse("Das Treffen in Graz ist geplatzt."), reference, BASELINE.key_terms)
    assert again.new_cues == ()
    first = score_sentence(
        analyse("Das Treffen in Graz ist geplatzt."), BASELINE.reference, BASELINE.key_terms
    )
    assert first.new_cues == ("geplatzt",) and first.novel


def test_one_news_cycle_one_subject_one_development_a_new_subject_later_another() -> None:
    first = story_item(1, SANCTIONS_TITLE, SANCTIONS, START)
    other = story_item(2, SANCTIONS_OTHER_TITLE, SANCTIONS_OTHER, START + timedelta(hours=20))
    records, diffs = diff_items(BASELINE, [], [first, other])
    assert len(records) == 1 and {s.item_id for s in records[0].sources} == {1, 2}
    assert [d.verdict for d in diffs] == ["new", "known"]
    assert records[0].title == SANCTIONS_TITLE  # the headline says what the news is
    # Four days later, in the next poll: a new subject opens a development of its own.
    known = as_known(records, [])
    later = story_item(3, MEDIATOR_TITLE, MEDIATOR, START + timedelta(days=4))
    records2, diffs2 = diff_items(BASELINE, known, [later])
    assert diffs2[0].verdict == "new"
    assert [r.key for r in records2] != [records[0].key]
    # Re-running the first poll gives the same keys (idempotent alerts).
    assert [r.key for r in diff_items(BASELINE, [], [first, other])[0]] == [records[0].key]


# One sentence per change-of-state cue (and some without): the one-search screen in ``analyse``
# must find exactly the cues the per-cue patterns find.
_CUE_SENTENCES = [
    "Der Gipfel in Graz wurde abgesagt.",
    "Berger sagt das Treffen in Graz kurzfristig ab.",
    "Das Treffen wird auf nächste Woche verschoben.",
    "Die Pläne liegen vorerst auf Eis.",
    "Das Treffen findet in diesem Jahr nicht statt.",
    "Die Gespräche sind geplatzt.",
    "Nordland hat die Lieferungen gestoppt.",
    "Der Bundestag hat die Lieferung genehmigt.",
    "Ostrow lehnt jede Verhandlung über Graz ab.",
    "Berger hat Hilfe zugesagt.",
    "Es gibt keine Zusage für die Lieferung.",
    "Nordland verhängt Sanktionen gegen Südland.",
    "Beide Seiten haben sich auf ein Abkommen geeinigt.",
    "Das Parlament hat die Reform beschlossen.",
    "Berger und Ostrow telefonierten am Abend.",
    "Die Minister trafen sich in Wien.",
    "Das ist eine Kehrtwende der Regierung.",
    "Der Minister ist zurückgetreten.",
    "Für Graz gilt eine Ausnahme.",
    "Berger und Ostrow wollen sich in Graz treffen.",
    "Die Delegationen reisen am Montag an.",
]


def test_the_cue_screen_finds_exactly_what_the_cue_patterns_find() -> None:
    from monitor.diff.model import _CUE_RES, analyse
    from monitor.text import fold

    seen: set[str] = set()
    for sentence in [*_CUE_SENTENCES, *split_sentences(T.CANCELLATION), *split_sentences(T.SANCTIONS)]:
        expected = tuple(label for label, pattern in _CUE_RES if pattern.search(fold(sentence)))
        assert analyse(sentence).cues == expected, sentence
        seen.update(expected)
    assert seen == {label for label, _ in _CUE_RES}  # every cue was exercised


def test_a_word_first_in_one_sentence_and_inside_another_is_analysed_for_each_place() -> None:
    """``analyse`` takes each token's facts from a cache: the first word of a sentence (capitalised
    anyway, never a name; a noun only if its dictionary form is) must not share an entry with the
    same word inside a sentence, in either order."""
    inside = analyse("Gestern besuchte Tarnowski die Wasserwerke.")
    first = analyse("Tarnowski besuchte gestern die Wasserwerke.")
    assert "tarnowski" in inside.names and "tarnowski" not in first.names
    assert analyse("Gestern besuchte Tarnowski die Wasserwerke.") == inside
    # a verb first in its sentence is no noun; inside a sentence, capitalised, it would count as one
    assert "besuchen" not in analyse("Besuchte Tarnowski die Wasserwerke?").nouns
    assert "wasserwerk" in first.nouns and "besuchen" in first.terms - first.nouns


def test_a_reference_answers_anew_once_it_learns_more() -> None:
    """``Reference`` remembers its answers to ``knows_name`` and ``covers``; adding a sentence
    must make it answer from the new content (and the memo never makes references unequal)."""
    reference = Reference()
    assert not reference.knows_name("tarnowski") and reference.covers("wasserwerk") == 0.0
    assert reference.covers("wasserwerk-betreiber") == 0.0
    copy = reference.copy()
    reference.add(analyse("Gestern besuchte Tarnowski die Wasserwerke."))
    assert reference.knows_name("tarnowski") and reference.knows_name("tarnowskis")
    assert reference.covers("wasserwerk") == 1.0 and reference.covers("wasserwerk-betreiber") == 0.5
    assert not copy.knows_name("tarnowski") and copy.covers("wasserwerk") == 0.0
    fresh = Reference()
    fresh.add(analyse("Gestern besuchte Tarnowski die Wasserwerke."))
    assert fresh == reference
