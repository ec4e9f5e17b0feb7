"""Diff stage on texts we wrote: restatements, new facts, cancellations, wire copies, updates."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.diff import (
    StoryItem,
    baseline_novelty,
    build_baseline,
    diff_items,
    find_developments,
    novel_words,
)
from monitor.diff.novelty import item_sentences, score_item
from monitor.store import DevelopmentRecord, KnownDevelopment
from tests import diff_texts as T

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
BASELINE = build_baseline("graz-gipfel", T.BASELINE)


def item(
    item_id: int,
    title: str,
    text: str,
    *,
    kind: str = "new",
    previous_title: str | None = None,
    previous_text: str | None = None,
) -> StoryItem:
    return StoryItem(
        item_id=item_id,
        feed=f"feed-{item_id}",
        url=f"https://example.org/{item_id}",
        title=title,
        text=text,
        published=T0 + timedelta(hours=item_id),
        kind=kind,
        previous_title=previous_title,
        previous_text=previous_text,
    )


def as_known(records: list[DevelopmentRecord], known: list[KnownDevelopment]) -> list[KnownDevelopment]:
    """What the store would hand back on the next poll."""
    out = list(known)
    for r in records:
        if not any(k.key == r.key for k in out):
            out.append(
                KnownDevelopment(
                    len(out) + 1, r.story_id, r.key, r.title, list(r.novel), list(r.terms), r.first_seen
                )
            )
    return out


def test_restatement_in_other_words_is_no_development() -> None:
    records, diffs = diff_items(BASELINE, [], [item(1, T.RESTATEMENT_TITLE, T.RESTATEMENT)])
    assert records == []
    assert diffs[0].verdict == "restatement"


def test_cancellation_is_a_development_with_its_sentences_and_source() -> None:
    records = find_developments(BASELINE, [], [item(2, T.CANCELLATION_TITLE, T.CANCELLATION)])
    assert len(records) == 1
    dev = records[0]
    assert dev.title == T.CANCELLATION_TITLE
    assert any("abgesagt" in s for s in dev.novel)
    assert [s.item_id for s in dev.sources] == [2]
    assert dev.score >= BASELINE.novelty_threshold
    assert dev.first_seen == T0 + timedelta(hours=2)


def test_restatement_and_news_in_one_batch() -> None:
    records = find_developments(
        BASELINE,
        [],
        [item(1, T.RESTATEMENT_TITLE, T.RESTATEMENT), item(2, T.CANCELLATION_TITLE, T.CANCELLATION)],
    )
    assert [[s.item_id for s in r.sources] for r in records] == [[2]]


def test_wire_copy_from_another_outlet_joins_the_known_development() -> None:
    first = find_developments(BASELINE, [], [item(2, T.CANCELLATION_TITLE, T.CANCELLATION)])
    known = as_known(first, [])
    second, diffs = diff_items(BASELINE, known, [item(3, T.CANCELLATION_COPY_TITLE, T.CANCELLATION_COPY)])
    assert diffs[0].verdict == "known"
    assert len(second) == 1
    assert second[0].key == first[0].key  # same key: the store merges the source, no second alert
    assert [s.item_id for s in second[0].sources] == [3]


def test_copies_in_the_same_poll_form_one_development() -> None:
    records = find_developments(
        BASELINE,
        [],
        [
            item(2, T.CANCELLATION_TITLE, T.CANCELLATION),
            item(3, T.CANCELLATION_COPY_TITLE, T.CANCELLATION_COPY),
        ],
    )
    assert len(records) == 1
    assert sorted(s.item_id for s in records[0].sources) == [2, 3]


def test_new_fact_after_a_known_development_is_a_new_development() -> None:
    known = as_known(find_developments(BASELINE, [], [item(2, T.CANCELLATION_TITLE, T.CANCELLATION)]), [])
    records, diffs = diff_items(BASELINE, known, [item(4, T.SANCTIONS_TITLE, T.SANCTIONS)])
    assert diffs[0].verdict == "new"
    assert len(records) == 1
    assert records[0].key != known[0].key
    assert any("Sanktionen" in s for s in records[0].novel)


def test_keys_are_deterministic_across_reruns() -> None:
    batch = [item(2, T.CANCELLATION_TITLE, T.CANCELLATION), item(4, T.SANCTIONS_TITLE, T.SANCTIONS)]
    assert [r.key for r in find_developments(BASELINE, [], batch)] == [
        r.key for r in find_developments(BASELINE, [], list(reversed(batch)))
    ]


def test_corrected_headline_is_not_a_development() -> None:
    updated = item(
        1,
        T.RESTATEMENT_TITLE_FIXED,
        T.RESTATEMENT,
        kind="updated",
        previous_title=T.RESTATEMENT_TITLE,
        previous_text=T.RESTATEMENT,
    )
    assert find_developments(BASELINE, [], [updated]) == []


def update_with_a_new_paragraph() -> StoryItem:
    """The restatement again, updated with one new paragraph (the news)."""
    return item(
        1,
        T.RESTATEMENT_TITLE,
        T.RESTATEMENT_UPDATED,
        kind="updated",
        previous_title=T.RESTATEMENT_TITLE,
        previous_text=T.RESTATEMENT,
    )


def test_update_with_a_new_paragraph_is_a_development_of_that_paragraph() -> None:
    records = find_developments(BASELINE, [], [update_with_a_new_paragraph()])
    assert len(records) == 1
    assert records[0].novel == [T.RESTATEMENT_UPDATED.strip().splitlines()[-1]]
    assert "verschoben" in records[0].title


def test_the_known_development_is_not_new_again() -> None:
    """Once the cancellation is known, the same text is no news."""
    known = as_known(find_developments(BASELINE, [], [item(2, T.CANCELLATION_TITLE, T.CANCELLATION)]), [])
    _, diffs = diff_items(BASELINE, known, [item(5, T.CANCELLATION_TITLE, T.CANCELLATION)])
    assert diffs[0].verdict == "known"
    assert diffs[0].story_score < BASELINE.novelty_threshold


def test_novel_words_are_those_the_baseline_lacks() -> None:
    words = novel_words("Der Gipfel in Graz ist abgesagt, sagte Igor Malenko.", BASELINE.reference)
    assert {"abgesagt", "Igor", "Malenko"} <= words
    assert "Graz" not in words and "Gipfel" not in words


def test_threshold_per_story() -> None:
    strict = build_baseline("graz-gipfel", T.BASELINE, novelty_threshold=9.0)
    assert find_developments(strict, [], [item(2, T.CANCELLATION_TITLE, T.CANCELLATION)]) == []


def test_empty_baseline_and_empty_items() -> None:
    empty = build_baseline("x", None)
    assert find_developments(empty, [], []) == []
    assert find_developments(BASELINE, [], [item(9, "", "")]) == []


_german = st.text(
    alphabet=st.sampled_from(
        list("abcdefghijklmnopqrstuvwxyzäöüßABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÜ0123456789 .,;:!?-–„“\n")
    ),
    max_size=400,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_german, st.lists(st.sampled_from(T.BASELINE.split()), max_size=80).map(" ".join)))
def test_a_text_diffed_against_itself_has_nothing_new(text: str) -> None:
    baseline = build_baseline("self", text)
    score, novel = score_item(item_sentences("", text), baseline.reference, baseline.key_terms)
    assert novel == []
    assert score == 0
    assert find_developments(baseline, [], [item(1, "", text)]) == []


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_diff_never_crashes_on_arbitrary_unicode(text: str) -> None:
    diff_items(BASELINE, [], [item(1, text[:40], text)])


def test_an_item_brings_its_sentence_analysis_computed_elsewhere() -> None:
    """``StoryItem.sentences`` (the parse worker's ``item_sentences``) is what the diff scores: the
    same analysis gives the same developments; it is used instead of analysing the text again."""
    plain = item(2, T.CANCELLATION_TITLE, T.CANCELLATION)
    given_analysis = replace(plain, sentences=item_sentences(T.CANCELLATION_TITLE, T.CANCELLATION))
    assert find_developments(BASELINE, [], [given_analysis]) == find_developments(BASELINE, [], [plain])
    assert find_developments(BASELINE, [], [plain])  # a development: the comparison means something
    restated = replace(plain, sentences=item_sentences("", T.BASELINE))
    assert find_developments(BASELINE, [], [restated]) == []


def test_an_item_diffed_against_the_baseline_ahead_gives_the_same_developments() -> None:
    """``StoryItem.novelty`` (the parse worker's ``baseline_novelty``) is step 1 of the diff done
    elsewhere: with it, the same developments and verdicts come out, and a restatement needs no
    sentence analysis at all. It is trusted (a verdict that contradicts the text shows it) only
    for a new item at the story's own threshold; an update is diffed against its previous text."""
    batch = [
        item(1, T.RESTATEMENT_TITLE, T.RESTATEMENT),
        item(2, T.CANCELLATION_TITLE, T.CANCELLATION),
        item(3, T.CANCELLATION_COPY_TITLE, T.CANCELLATION_COPY),
        item(4, T.SANCTIONS_TITLE, T.SANCTIONS),
    ]

    def ahead(i: StoryItem) -> StoryItem:
        sentences = item_sentences(i.title, i.text)
        novelty = baseline_novelty(BASELINE, sentences)
        return replace(i, novelty=novelty, sentences=sentences if novelty[1] else None)

    records, diffs = diff_items(BASELINE, [], batch)
    records_ahead, diffs_ahead = diff_items(BASELINE, [], [ahead(i) for i in batch])
    assert records_ahead == records and len(records) == 2
    verdicts = [(d.item_id, d.verdict, d.baseline_score, d.story_score, d.development_key) for d in diffs]
    assert verdicts == [
        (d.item_id, d.verdict, d.baseline_score, d.story_score, d.development_key) for d in diffs_ahead
    ]
    assert [d.verdict for d in diffs] == ["restatement", "new", "known", "new"]
    assert ahead(batch[0]).sentences is None  # the restatement's were never needed

    news = batch[1]
    said_restated = replace(news, novelty=(0.0, ()))
    assert find_developments(BASELINE, [], [said_restated]) == []  # trusted
    assert diff_items(BASELINE, [], [said_restated], threshold=0.5)[0]  # another threshold: computed
    updated = update_with_a_new_paragraph()
    assert find_developments(BASELINE, [], [replace(updated, novelty=(0.0, ()))]) == find_developments(
        BASELINE, [], [updated]
    )
    assert find_developments(BASELINE, [], [updated])


class _InOrder(frozenset[str]):
    """A frozenset that iterates in the order given: a process's string hashing decides the order of
    a real one, so this stands for two processes with different hash seeds."""

    def __new__(cls, items: list[str]) -> _InOrder:
        made = super().__new__(cls, items)
        made.order = list(items)
        return made

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.order)


def test_a_sentence_scores_the_same_whatever_the_order_of_its_terms() -> None:
    # Three new words of weight 0.4, one compound noun of which one part is known (half its weight
    # of 1.0), one known noun: 1.7 of 3.2 is new, exactly 0.53125. Summed as floats in different
    # orders this came out 0.5313 in one process and 0.5312 in another; a score that depends on the
    # process can turn an item's verdict (and a development's count) between runs.
    from itertools import permutations

    from monitor.diff.model import Reference, Sentence
    from monitor.diff.novelty import score_sentence

    nouns = ["gipfel-termin", "gipfel"]
    terms = ["erneut", "knapp", "zugesagt", *nouns]
    reference = Reference(vocab={"gipfel"})
    scores = set()
    for order in permutations(terms):
        sentence = Sentence(
            "Erneut knapp zugesagt: Gipfel-Termin beim Gipfel.",
            _InOrder(list(order)),
            frozenset(nouns),
            frozenset(),
            frozenset(),
            (),
            False,
            False,
        )
        scores.add(score_sentence(sentence, reference, frozenset({"gipfel"})).score)
    assert scores == {round(17 / 32, 4)}  # 1.7 / 3.2, exactly


def test_items_of_the_same_time_open_the_same_development_whatever_order_they_were_written_in() -> None:
    """Two outlets report the same news at the same time (day-precise dates, a wire copy): which of
    them opens the development (its title, its key, hence its alert) must not depend on which feed
    happened to be written first, i.e. on the item ids."""
    same_time = T0 + timedelta(hours=2)

    def report(item_id: int, outlet: str, title: str, text: str) -> StoryItem:
        return replace(
            item(item_id, title, text), feed=outlet, url=f"https://{outlet}.example/1", published=same_time
        )

    def developments(cancellation_id: int, copy_id: int) -> list[tuple[str, str, list[str], list[str]]]:
        items = [
            report(cancellation_id, "nordkurier", T.CANCELLATION_TITLE, T.CANCELLATION),
            report(copy_id, "suedblatt", T.CANCELLATION_COPY_TITLE, T.CANCELLATION_COPY),
        ]
        outlet = {i.item_id: i.feed for i in items}
        return [
            (r.key, r.title, r.novel, [outlet[s.item_id] for s in r.sources])
            for r in find_developments(BASELINE, [], items)
        ]

    first, second = developments(2, 3), developments(3, 2)
    assert len(first) == 1 and len(first[0][3]) == 2  # one development, both outlets its sources
    assert first == second


def test_a_recap_of_the_known_change_with_news_of_its_own_is_a_development() -> None:
    """A new fact that comes with a recap of a known change of state ("Nach der Absage ... 5000
    Soldaten an die Grenze verlegt") is news of its own, and the same cancellation told by roles
    instead of names is not (both went wrong in an attempt to tell changes of state apart by their
    subjects; README "Known limits")."""
    first = item(2, T.BARE_CANCELLATION_TITLE, T.BARE_CANCELLATION)
    recap = item(5, T.RECAP_WITH_NEWS_TITLE, T.RECAP_WITH_NEWS)
    by_roles = item(6, T.CANCELLATION_BY_ROLES_TITLE, T.CANCELLATION_BY_ROLES)
    records, diffs = diff_items(BASELINE, [], [first, recap, by_roles])
    assert [d.verdict for d in diffs] == ["new", "new", "known"]
    assert sorted(r.title for r in records) == sorted([T.BARE_CANCELLATION_TITLE, T.RECAP_WITH_NEWS_TITLE])
    cancellation = next(r for r in records if r.title == T.BARE_CANCELLATION_TITLE)
    assert sorted(s.item_id for s in cancellation.sources) == [2, 6]


def test_the_same_cancellation_with_a_fact_of_its_own_is_a_development() -> None:
    """A report that retells a known cancellation in other words and adds a fact of its own (a
    minister dismissed: no cue, no new name or number) is a development; joining reports of the
    same change of state to its development swallowed it (README "Known limits")."""
    known = as_known(
        find_developments(BASELINE, [], [item(2, T.BARE_CANCELLATION_TITLE, T.BARE_CANCELLATION)]), []
    )
    records, diffs = diff_items(
        BASELINE, known, [item(3, T.CANCELLATION_WITH_DISMISSAL_TITLE, T.CANCELLATION_WITH_DISMISSAL)]
    )
    assert [d.verdict for d in diffs] == ["new"]
    assert [r.title for r in records] == [T.CANCELLATION_WITH_DISMISSAL_TITLE]
