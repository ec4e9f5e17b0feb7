"""Story matching on German texts we wrote: variants, folding, morphology, compounds, rules, traps,
story-aware relevance, rule errors, ``monitor match`` and the pipeline's background handling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from monitor.config import ConfigError, StoryConfig, load_config, parse_config
from monitor.match import StoryMatcher, compile_story, prepare
from tests.conftest import Project
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = load_config(ROOT / "feeds.yaml")
SHIPPED_STORY = SHIPPED.story("budapest-summit")
SHIPPED_BASELINE = (ROOT / "stories" / "budapest-summit.md").read_text(encoding="utf-8")


def story(rules: dict[str, Any] | None = None, **extra: Any) -> StoryConfig:
    data: dict[str, Any] = {"id": "test", "title": "Test", **extra}
    if rules is not None:
        data["rules"] = rules
    return StoryConfig.model_validate(data)


def shipped() -> StoryMatcher:
    return compile_story(SHIPPED_STORY, SHIPPED_BASELINE)


def groups_hit(matcher: StoryMatcher, text: str) -> set[str]:
    doc_hits = matcher.terms.hits(prepare("", text))
    return {matcher.terms.groups[gi] for _, gi, _ in doc_hits}


# --- terms: variants, folding, morphology, compounds -------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "Selenski",
        "Selenskyj",
        "Selenskij",
        "Selenskyi",
        "Zelensky",
        "Zelenskyy",
        "Zelenskij",
        "SELENSKYJ",
        "Selenskyjs",
        "Selenskis",
        "Zelenskiy",
    ],
)
def test_every_selenski_spelling_is_the_same_person(spelling: str) -> None:
    assert "selenski" in groups_hit(shipped(), f"Gestern sprach {spelling} in Kiew.")


@pytest.mark.parametrize(
    ("text", "group"),
    [
        ("Dmitrijew bestätigte das Treffen.", "dmitrijew"),
        ("Kirill Dmitriev confirmed.", "dmitrijew"),
        ("Viktor Orbán sagte", "orban"),
        ("Viktor Orban sagte", "orban"),
        ("Lavrov und Rubio telefonierten", "lawrow"),
        ("Lawrow und Rubio telefonierten", "rubio"),
        ("im Weissen Haus", "washington"),
        ("im Weißen Haus", "washington"),
        ("im WEISSEN HAUS", "washington"),
    ],
)
def test_name_variants_and_umlaut_folding(text: str, group: str) -> None:
    assert group in groups_hit(shipped(), text)


@pytest.mark.parametrize(
    ("text", "group"),
    [
        ("Der Budapest-Gipfel ist geplant.", "summit"),
        ("Der Budapest-Gipfel ist geplant.", "budapest"),
        ("Ein Gipfeltreffen in Ungarn", "summit"),
        ("Die Vorbereitung des Gipfels läuft.", "summit"),
        ("Der Ort des Treffens ist offen.", "summit"),
        ("Trump trifft Putin", "summit"),
        ("Sie haben sich getroffen.", "summit"),
        ("Der Gipfelort steht fest.", "summit"),
        ("Der Klimagipfel endet.", "summit"),  # '*gipfel': a kind of summit
        ("Keine Tomahawk-Lieferungen an Kiew", "tomahawk"),
        ("Tomahawks für die Ukraine", "tomahawk"),
        ("der Kremlchef warnte", "putin"),
        ("Der Kremlsprecher äußerte sich.", "putin"),
        ("Die Trumpregierung schweigt.", "trump"),  # not a longer noun: the term's compound
        ("Der Gipfelsaal ist voll.", "summit"),  # Gipfel + Saal ('Gipfels' + 'aal': the term's own form)
        ("Das Trump-Putin-Treffen", "trump"),
        ("Das Trump-Putin-Treffen", "putin"),
        ("Das Trump-Putin-Treffen", "summit"),
        ("die ungarische Hauptstadt", "budapest"),
        ("in der ungarischen Hauptstadt", "budapest"),
        ("Sanktionen gegen Rosneft", "sanctions"),
    ],
)
def test_inflection_and_compounds(text: str, group: str) -> None:
    assert group in groups_hit(shipped(), text)


@pytest.mark.parametrize(
    ("text", "group"),
    [
        ("Wanderer auf den Alpengipfeln", "summit"),
        ("Der Berggipfel im Nebel", "summit"),
        ("Das spielte er als Trumpf aus.", "trump"),
        # a longer noun that starts like the term: Trumpf + Karte, not Trump + fkarte
        ("Orbán spielt im Sanktionsstreit seine Trumpfkarte aus.", "trump"),
        ("Das war sein letztes Trumpfass.", "trump"),
        ("Was betrifft das? Es betreffen alle.", "summit"),
        ("Budapester Straße in Berlin", "summit"),
    ],
)
def test_no_false_hits_inside_unrelated_words(text: str, group: str) -> None:
    assert group not in groups_hit(shipped(), text)


def test_plain_term_never_matches_as_the_tail_of_a_compound() -> None:
    m = compile_story(story(keywords=["Gipfel"]))
    assert m.match("Wandern", "Auf den Alpengipfeln liegt Schnee.").matched is False
    assert m.match("Politik", "Das Gipfeltreffen beginnt.").matched is True
    assert m.match("Politik", "Die Gipfel-Teilnehmer reisen an.").matched is True
    assert m.match("Politik", "Der Ort des Gipfels steht fest.").matched is True


def test_exact_terms_and_exclusions() -> None:
    m = compile_story(story({"terms": {"k": ["=USA", "*gipfel", "!Alpengipfel"]}, "match": [{"any": ["k"]}]}))
    assert m.match("", "Die USA reagieren.").matched
    assert not m.match("", "Die USAF fliegt.").matched
    assert m.match("", "Der EU-Gipfel tagt.").matched
    assert m.match("", "Der Klimagipfel tagt.").matched
    assert not m.match("", "Auf dem Alpengipfel.").matched


# --- the shipped story: traps and follow-ups ---------------------------------------------------

TRAPS = {
    "pride": (
        "Budapest Pride trotz Verbot",
        "Zehntausende zogen am Samstag durch Budapest. Die Regierung von Viktor Orbán hatte die "
        "Pride verboten, der Bürgermeister erklärte sie zur städtischen Veranstaltung.",
    ),
    "formula1": (
        "Norris gewinnt in Ungarn",
        "Beim Großen Preis von Ungarn bei Budapest siegte Lando Norris vor Oscar Piastri. "
        "Das Treffen der Teamchefs am Vorabend verlief ruhig.",
    ),
    "steak": (
        "Das perfekte Tomahawk-Steak",
        "Ein Tomahawk vom Rind braucht Zeit: erst scharf anbraten, dann im Ofen garen. "
        "Dazu passt ein kräftiger Rotwein aus Ungarn.",
    ),
    "tomahawk-elsewhere": (
        "US-Marine feuert Marschflugkörper",
        "Zerstörer der US-Marine haben Tomahawk-Marschflugkörper auf Ziele im Jemen abgefeuert, "
        "teilte das Pentagon mit. Präsident Trump sprach von einem Erfolg.",
    ),
    "eu-summit": (
        "EU-Gipfel in Brüssel berät über Hilfen",
        "Beim EU-Gipfel in Brüssel sprach Selenskyj per Video zu den Staats- und Regierungschefs. "
        "Sie berieten über neue Milliardenhilfen für die Ukraine.",
    ),
    "selenskyj-domestic": (
        "Selenskyj entlässt Minister",
        "Der ukrainische Präsident Wolodymyr Selenskyj hat nach Korruptionsvorwürfen zwei Minister "
        "entlassen. Die Ermittlungen betreffen den Energiesektor.",
    ),
    "memorandum": (
        "Das Budapester Memorandum von 1994",
        "Im Budapester Memorandum gab die Ukraine ihre Atomwaffen ab. Russland, die USA und "
        "Großbritannien sicherten ihr dafür die Achtung ihrer Grenzen zu.",
    ),
    "alpine": (
        "Bergsteiger erreichen den Gipfel",
        "Nach sechs Stunden erreichten die Bergsteiger die Alpengipfel. Das Treffen am "
        "Gipfelkreuz war der Höhepunkt.",
    ),
}


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_traps_do_not_match_the_shipped_story(trap: str) -> None:
    title, text = TRAPS[trap]
    result = shipped().match(title, text, datetime(2025, 10, 20, tzinfo=UTC))
    assert result.matched is False, result


STORY_ITEMS = {
    "summit": (
        "Trump will Putin in Budapest treffen",
        "Nach einem langen Telefonat kündigte US-Präsident Donald Trump ein Gipfeltreffen mit "
        "Wladimir Putin in der ungarischen Hauptstadt an. Viktor Orbán erklärte, Ungarn sei bereit.",
    ),
    "tomahawk": (
        "Keine Tomahawks für Kiew",
        "Beim Besuch im Weißen Haus erhielt Selenskyj keine Zusage für die Marschflugkörper vom Typ "
        "Tomahawk. Die Ukraine hatte auf die Waffen gehofft.",
    ),
    "rubio-lawrow": (
        "Außenminister telefonieren",
        "Marco Rubio und Sergej Lawrow haben am Montag miteinander telefoniert, um das Treffen der "
        "Präsidenten vorzubereiten.",
    ),
    "sanctions": (
        "Washington verhängt Sanktionen gegen Ölkonzerne",
        "Die US-Regierung von Donald Trump hat Sanktionen gegen Rosneft und Lukoil verhängt. Der "
        "Kreml reagierte verärgert.",
    ),
    "called-off": (
        "Gipfel abgesagt",
        "Trump hat das geplante Treffen mit Putin in Budapest abgesagt. Es habe sich nicht richtig "
        "angefühlt, sagte er.",
    ),
}


@pytest.mark.parametrize("name", sorted(STORY_ITEMS))
def test_story_items_and_follow_ups_match(name: str) -> None:
    title, text = STORY_ITEMS[name]
    result = shipped().match(title, text, datetime(2025, 10, 21, tzinfo=UTC))
    assert result.matched is True, result
    assert result.evidence and result.terms and result.rules


def test_budapest_alone_is_not_the_story() -> None:
    m = shipped()
    assert not m.match("Budapest im Herbst", "Budapest ist eine schöne Stadt an der Donau.").matched
    assert m.match("Budapest im Herbst", "Trump und Putin wollen sich in Budapest treffen.").matched


# --- rules: proximity, none, exclude, fields, threshold ----------------------------------------

RULES: dict[str, Any] = {
    "terms": {"city": ["Budapest"], "meet": ["Gipfel", "Treffen"], "leader": ["Trump", "Putin"]},
    "match": [{"all": ["city", "meet", "leader"], "near": "sentence", "weight": 2}],
    "threshold": 2,
    "fields": {"title": 1.5, "body": 1},
}


def test_same_sentence_proximity() -> None:
    m = compile_story(story(RULES))
    assert m.match("", "Trump plant ein Treffen in Budapest.").matched
    far = "Budapest ist schön. Das Wetter war gut. Trump plant ein Treffen."
    assert not m.match("", far).matched


def test_word_window_proximity() -> None:
    rules = {**RULES, "match": [{"all": ["city", "meet", "leader"], "near": 5, "weight": 2}]}
    m = compile_story(story(rules))
    assert m.match("", "Trump: Treffen in Budapest.").matched
    assert not m.match(
        "", "Trump sagte heute lange Dinge über vieles andere und dann kam Budapest mit Treffen."
    ).matched


def test_title_counts_more_than_body() -> None:
    rules = {**RULES, "threshold": 3}
    m = compile_story(story(rules))
    assert m.match("Trump: Treffen in Budapest", "").score == 3.0
    assert m.match("Politik", "Trump: Treffen in Budapest.").score == 2.0
    assert m.match("Trump: Treffen in Budapest", "").matched
    assert not m.match("Politik", "Trump: Treffen in Budapest.").matched


def test_none_groups_and_exclude_vetoes() -> None:
    rules = {
        **RULES,
        "terms": {**RULES["terms"], "sport": ["Formel", "Rennen"], "pride": ["Pride"]},
        "match": [{"all": ["city", "meet", "leader"], "none": ["sport"], "near": "sentence", "weight": 2}],
        "exclude": [{"any": ["pride"]}],
    }
    m = compile_story(story(rules))
    assert m.match("", "Trump plant ein Treffen in Budapest.").matched
    assert not m.match("", "Trump plant ein Treffen beim Rennen in Budapest.").matched
    vetoed = m.match("Pride", "Trump plant ein Treffen in Budapest.")
    assert not vetoed.matched and "exclude" in vetoed.reason


def test_keywords_story_matches_any_keyword() -> None:
    m = compile_story(story(keywords=["Tomahawk", "Selenski"]))
    result = m.match("Tomahawk-Debatte", "Selenskyj nicht erwähnt.")
    assert result.matched and result.terms == ("Tomahawk",)
    assert not m.match("Anderes", "Nichts davon.").matched


# --- story-aware relevance ---------------------------------------------------------------------

SIM_RULES: dict[str, Any] = {
    "terms": {
        "city": ["Budapest"],
        "meet": ["Gipfel", "Treffen"],
        "leader": ["Trump", "Putin"],
        "actor": ["Rubio", "Lawrow", "Dmitrijew", "Trump", "Putin"],
    },
    "match": [{"all": ["city", "meet", "leader"], "weight": 3}],
    "threshold": 3,
    "background": "30d",
    "similarity": {"requires": ["actor"], "baseline": 0.0, "story": 0.3, "weight": 3, "anchor": 0.3},
}
BASELINE = (
    "Trump und Putin wollen sich in Budapest zum Gipfel treffen. Außenminister Rubio soll das "
    "Treffen mit Lawrow vorbereiten. Der Sondergesandte Dmitrijew bestätigte die Pläne des Kremls."
)


def test_follow_up_without_keywords_is_found_by_similarity_to_the_story() -> None:
    m = compile_story(story(SIM_RULES), BASELINE)
    follow_up = (
        "Rubio und Lawrow telefonieren",
        "Außenminister Rubio und sein Kollege Lawrow haben telefoniert; der Sondergesandte "
        "Dmitrijew sprach von Fortschritten bei den Vorbereitungen.",
    )
    assert not m.match(*follow_up).matched  # nothing in the story yet
    t0 = datetime(2025, 10, 16, tzinfo=UTC)
    assert m.match("Gipfel in Budapest", BASELINE, t0).matched
    result = m.match(*follow_up, t0 + timedelta(days=4))
    assert result.matched and result.story_similarity and result.story_similarity >= 0.3
    unrelated = m.match("Trump und die Zölle", "Trump verhängt Zölle auf Stahl aus Kanada.")
    assert not unrelated.matched


def test_items_long_before_the_story_started_are_background() -> None:
    m = compile_story(story(SIM_RULES), BASELINE)
    start = datetime(2025, 10, 16, tzinfo=UTC)
    assert m.match("Gipfel in Budapest", BASELINE, start).matched
    assert m.state.start == start and m.background_cutoff == start - timedelta(days=30)
    old = m.match(
        "Budapest als Gipfelort?", "Trump könnte Putin in Budapest treffen.", start - timedelta(days=60)
    )
    assert not old.matched and old.background
    assert m.match("Budapest als Gipfelort?", "Trump könnte Putin in Budapest treffen.", None).matched
    assert m.match(
        "Budapest als Gipfelort?", "Trump könnte Putin in Budapest treffen.", start - timedelta(days=3)
    ).matched


# --- rule errors ---------------------------------------------------------------------------------


def _config(rules: dict[str, Any]) -> str:
    return yaml.safe_dump({"stories": [{"id": "s", "title": "S", "rules": rules}]}, allow_unicode=True)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            {"terms": {"a": ["x"]}, "match": [{"all": ["b"]}]},
            "stories[0].rules (line 3): match[0].all: unknown term group 'b' (known: a)",
        ),
        ({"terms": {"a": ["x"]}, "match": [{"any": ["a"], "near": 0}]}, "stories[0].rules.match[0].near"),
        (
            {"terms": {"a": ["x"]}, "match": [{"any": ["a"], "nearby": 3}]},
            "stories[0].rules.match[0].nearby (line 7): unknown key",
        ),
        ({"terms": {"a": ["x"]}, "match": [{"weight": 2}]}, "a rule needs 'all' or 'any' term groups"),
        ({"terms": {"a": ["*"]}, "match": [{"any": ["a"]}]}, "stories[0].rules.terms.a[0]"),
        ({"terms": {"a": ["Gip*fel"]}, "match": [{"any": ["a"]}]}, "'*' and '=' may only start a term"),
        ({"terms": {"a": ["x"]}, "match": []}, "stories[0].rules.match"),
        ({"terms": {"a": ["!x"]}, "match": [{"any": ["a"]}]}, "terms.a: the group has no terms"),
        ({"terms": {"a": ["x"]}, "match": [{"any": ["a"]}], "threshold": -1}, "stories[0].rules.threshold"),
        (
            {"terms": {"a": ["x"]}, "match": [{"any": ["a"]}], "similarity": {"requires": ["z"]}},
            "similarity.requires: unknown term group 'z'",
        ),
        (
            {"terms": {"a": ["x"]}, "match": [{"any": ["a"]}], "background": "soon"},
            "stories[0].rules.background",
        ),
    ],
)
def test_invalid_rules_are_config_errors_with_the_key_path(rules: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_config(rules), source="feeds.yaml")
    message = str(info.value)
    assert message.startswith("feeds.yaml: ")
    assert expected in message


def test_invalid_rules_exit_2_from_the_cli(project: Project) -> None:
    project.write(
        {
            "stories": [
                {"id": "s", "title": "S", "rules": {"terms": {"a": ["x"]}, "match": [{"all": ["nope"]}]}}
            ]
        }
    )
    result = project.cli("items", "--json")
    assert result.exit_code == 2
    assert "stories[0].rules" in result.stderr and "unknown term group 'nope'" in result.stderr


def test_shipped_config_parses_and_requires_context() -> None:
    rules = SHIPPED_STORY.rules
    assert rules is not None and rules.threshold > 0
    budapest = next(c for c in rules.match if c.name == "budapest-summit")
    assert budapest.all == ["budapest", "summit"] and budapest.any and budapest.near


# --- monitor match -------------------------------------------------------------------------------


def _match_config(project: Project) -> None:
    project.write(
        {
            "stories": [
                {
                    "id": "budapest-summit",
                    "title": "Gipfel",
                    "baseline": {"text": BASELINE},
                    "rules": SIM_RULES,
                }
            ]
        }
    )


def test_match_command_explains_a_match(project: Project, tmp_path: Path) -> None:
    _match_config(project)
    article = tmp_path / "artikel.txt"
    article.write_text(
        "Trump und Putin in Budapest\nDas Gipfeltreffen soll bald stattfinden.\n", encoding="utf-8"
    )
    result = project.cli("match", "--story", "budapest-summit", "--json", str(article))
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["matched"] is True and data["score"] >= data["threshold"]
    assert "Budapest" in data["terms"] and data["rules"] == ["match[0]"]
    assert data["evidence"][0] == "Trump und Putin in Budapest"
    human = project.cli("match", "--story", "budapest-summit", str(article))
    assert human.exit_code == 0 and human.stdout.startswith("budapest-summit: MATCH")


def test_match_command_reads_stdin_and_explains_a_miss(project: Project) -> None:
    _match_config(project)
    from click.testing import CliRunner

    from monitor.cli import cli

    result = CliRunner().invoke(
        cli,
        ["--config", str(project.config_path), "match", "--story", "budapest-summit", "--json", "-"],
        input="Budapest im Herbst\nDie Stadt an der Donau lockt Besucher.\n",
    )
    assert result.exit_code == 0
    data = __import__("json").loads(result.stdout)
    assert data["matched"] is False and "threshold" in data["reason"]


def test_match_command_reads_pasted_html_as_the_poll_reads_a_feed(project: Project, tmp_path: Path) -> None:
    """Text copied from a page's source: entities decoded and tags dropped, as the parse stage does
    with a feed's text, so the explanation is of what a poll would match (was: no match)."""
    _match_config(project)
    article = tmp_path / "quelle.html"
    article.write_text(
        "Trump und Putin in <b>Budapest</b>\nDas Gipfeltreffen im Wei&szlig;en Haus soll bald stattfinden.\n",
        encoding="utf-8",
    )
    data = project.cli("match", "--story", "budapest-summit", "--json", str(article)).json()
    assert data["matched"] is True
    assert data["evidence"][0] == "Trump und Putin in Budapest"
    assert any("Weißen Haus" in sentence for sentence in data["evidence"])


def test_match_command_errors(project: Project, tmp_path: Path) -> None:
    _match_config(project)
    assert project.cli("match", "--story", "nope", "-").exit_code == 2
    missing = project.cli("match", "--story", "budapest-summit", str(tmp_path / "fehlt.txt"))
    assert missing.exit_code == 2 and "not found" in missing.stderr
    folder = project.cli("match", "--story", "budapest-summit", str(tmp_path))
    assert folder.exit_code == 2 and "is a directory" in folder.stderr


# --- the pipeline: background items leave the story once it is known to have started later -----


def test_poll_drops_background_items_once_the_story_start_is_known(
    project: Project, feed_server: FeedServer
) -> None:
    start = datetime.now(UTC) - timedelta(days=10)
    old = FakeEntry(
        "alt-1",
        "Budapest als Gipfelort?",
        "Trump könnte Putin in Budapest treffen.",
        link="https://zeitung.example/alt",
        published=start - timedelta(days=70),
    )
    core = FakeEntry(
        "neu-1", "Gipfel in Budapest", BASELINE, link="https://zeitung.example/neu", published=start
    )
    other = FakeEntry(
        "neu-2", "Wetter", "Sonne in Berlin.", link="https://zeitung.example/wetter", published=start
    )
    feed_server.put("/a.xml", rss([old]))
    feed_server.put("/b.xml", rss([core, other]))
    config = {
        "feeds": [
            {"name": "alt", "url": feed_server.url("/a.xml")},
            {"name": "neu", "url": feed_server.url("/b.xml")},
        ],
        "stories": [
            {"id": "budapest-summit", "title": "Gipfel", "baseline": {"text": BASELINE}, "rules": SIM_RULES}
        ],
    }
    project.write(config)
    # First only the old item exists: nothing is known about the story's start, so it matches.
    project.write({**config, "feeds": config["feeds"][:1]})
    assert project.cli("poll").exit_code == 0
    assert [i["title"] for i in project.cli("items", "--json").json()] == ["Budapest als Gipfelort?"]
    # Coverage arrives: the story started two months later; the old item is background.
    project.write(config)
    assert project.cli("poll").exit_code == 0
    titles = [i["title"] for i in project.cli("items", "--json").json()]
    assert titles == ["Gipfel in Budapest"]


def test_teasers_that_mention_rule_terms_are_full_text_candidates() -> None:
    m = shipped()
    teaser = (
        "Trump drängt auf Waffenstillstand",
        "Beim Besuch im Weißen Haus erhielt Selenskyj keine Zusage.",
    )
    assert not m.match(*teaser, remember=False).matched
    assert m.candidate(*teaser)
    assert not m.candidate("Oktoberfest endet", "Sechs Millionen Besucher tranken Bier in München.")


def test_the_screen_never_drops_an_item_with_hits() -> None:
    """``could_hit`` skips sentence splitting for texts without any term string; it must never say
    no for a text that has hits (inflections, compounds, phrases, transliterations)."""
    from monitor.match.engine import CompiledTerms, prepare

    terms = CompiledTerms.build(
        {"ort": ["Budapest", "*gipfel", "ungarische Hauptstadt"], "person": ["Selenskyj", "=USA"]}
    )
    texts = [
        ("Treffen geplant", "Die Staatschefs reisen in die ungarischen Hauptstadt."),
        ("Friedensgipfels Vorbereitung", "Nichts weiter."),
        ("Kurz", "Der Gipfel findet in BUDAPEST statt."),
        ("SELENSKYJ", "Er reist in die USA."),
        ("Wetter", "Morgen regnet es in München, übermorgen scheint die Sonne."),
        ("Börse", "Der DAX schließt höher; Anleger sind erleichtert."),
    ]
    screened = 0
    for title, text in texts:
        has_hits = bool(terms.hits(prepare(title, text)))
        if not terms.could_hit(title, text):
            screened += 1
            assert not has_hits, (title, text)
        else:
            assert has_hits or title in {"Wetter", "Börse"}
    assert screened == 2  # the two texts without any story term are screened out


def test_stories_share_the_per_item_work_with_identical_results() -> None:
    """Several stories over the same items: the story-independent work (folding, sentences, the
    diff's sentence analysis) is done once per item and shared; every story's match and diff
    results are the same as when each story computes everything itself."""
    from monitor import diff
    from monitor.diff.novelty import item_sentences

    stories = [
        (SHIPPED_STORY, SHIPPED_BASELINE),
        (story(SIM_RULES), BASELINE),
        (story(keywords=["Budapest", "Gipfel"]), "Gipfel in Budapest: Budapest, Gipfel."),
        (story(keywords=["Tomahawk", "Marschflugkörper"]), None),
    ]
    t0 = datetime(2025, 10, 16, tzinfo=UTC)
    items = [
        ("Gipfel in Budapest", BASELINE),
        (
            "Rubio und Lawrow telefonieren",
            "Rubio und Lawrow haben telefoniert. Dmitrijew sprach von Fortschritten.",
        ),
        (
            "Gipfel in Budapest abgesagt",
            "Trump sagt das Treffen mit Putin in Budapest ab. Der Kreml bedauert das.",
        ),
        ("Tomahawks für die Ukraine?", "Selenskyj bittet Trump in Washington um Tomahawk-Marschflugkörper."),
        ("Wetter", "Morgen regnet es in München."),
    ]

    def run(shared: bool) -> list[Any]:
        out: list[Any] = []
        for st, baseline_text in stories:
            matcher = compile_story(st, baseline_text)
            baseline = diff.build_baseline(st.id, baseline_text)
            matched = []
            for n, (title, text) in enumerate(items):
                if not shared:  # each story on its own: nothing left over from the previous one
                    prepare.cache_clear()
                    item_sentences.cache_clear()
                result = matcher.match(title, text, t0 + timedelta(hours=n))
                out.append(result)
                if result.matched:
                    matched.append(diff.StoryItem(n, "f", None, title, text, t0 + timedelta(hours=n), "new"))
            if not shared:
                item_sentences.cache_clear()
            out.append(diff.find_developments(baseline, [], matched, story_start=matcher.state.start))
        return out

    alone = run(shared=False)
    prepare.cache_clear()
    item_sentences.cache_clear()
    together = run(shared=True)
    assert together == alone
    assert sum(1 for r in alone if getattr(r, "matched", False)) >= 6  # the stories did match
    assert any(isinstance(r, list) and r for r in alone)  # and found developments
    # Shared: the second story gets the first story's analysis of the item, not a new one.
    title, text = items[2]
    assert prepare(title, text) is prepare(title, text)
    assert item_sentences(title, text) is item_sentences(title, text)


def test_one_screen_for_all_stories_says_no_only_when_every_story_says_no() -> None:
    """``StoryScreen`` (the pipeline screens each item once for all stories) rejects exactly the
    items that every story's own screen rejects; a story without a screen keeps everything in."""
    from monitor.match import StoryScreen

    matchers = [
        shipped(),
        compile_story(story(keywords=["Tomahawk", "Marschflugkörper"])),
        compile_story(story(keywords=["Selenskyj", "Selenski"])),
    ]
    texts = [
        ("Gipfel in Budapest", "Orbán empfängt die Gäste."),
        ("Lieferung", "Die USA liefern vorerst keine Tomahawks."),
        ("Kiew", "SELENSKI reist nach Washington."),
        ("Marschflugkörpern", "Nichts weiter."),
        ("Wetter", "Morgen regnet es in München, übermorgen scheint die Sonne."),
        ("Börse", "Der DAX schließt höher; Anleger sind erleichtert."),
    ]
    screen = StoryScreen(matchers)
    verdicts = [screen.could_hit(title, text) for title, text in texts]
    assert verdicts == [any(m.terms.could_hit(t, x) for m in matchers) for t, x in texts]
    assert verdicts == [True, True, True, True, False, False]
    # every story's own screen contributes: without the Tomahawk story its items are screened out
    assert not StoryScreen([matchers[0], matchers[2]]).could_hit(*texts[3])
    assert not StoryScreen([]).could_hit(*texts[0])
    unscreened = compile_story(story(keywords=["Tomahawk"]))
    unscreened.terms.screen = None  # as for a story with nothing to look for
    assert StoryScreen([matchers[0], unscreened]).could_hit(*texts[4])


def test_word_positions_are_those_of_whole_words_only() -> None:
    """``Document.positions`` searches one word at a time: it finds exactly the offsets at which
    the folded text's word runs equal the word (not inside longer words, numbers or compounds)."""
    import re

    doc = prepare(
        "Gipfel-Treffen: Gipfel 2025 in Budapest",
        "Der Gipfel2 und der Gipfelort; Budapester Gipfel. GIPFEL! Ein Vorgipfel und 2025er Gipfel-Gipfel.",
    )
    words = re.compile(r"[a-z0-9]+")
    for word in [*sorted(doc.vocab), "budapes", "ipfel", "nirgends"]:
        expected = [m.start() for m in words.finditer(doc.folded) if m.group() == word]
        assert doc.positions(word) == expected, word
    assert len(doc.positions("gipfel")) == 6
    assert doc.positions("gipfel") == doc.positions("gipfel")  # from the per-word cache


def test_the_poll_trusts_the_workers_screen_only_for_the_entrys_own_text(project: Project) -> None:
    """A feed parsed in a worker says which entries some story's terms occur in
    (``ParsedFeed.screened`` / ``.outcomes``); the writer takes that verdict for the entry's own
    text under its own stories, and screens again when it diffs an extracted article instead, or
    when the worker's results were made under other stories (``screened`` names them)."""
    from monitor.fulltext import FullText
    from monitor.parse import Entry, ParsedFeed, content_hash
    from monitor.pipeline import FeedPollReport, Monitor, _BatchDiff

    project.write(
        {
            "feeds": [{"name": "kurier", "url": "https://example.org/kurier.xml"}],
            "stories": [{"id": "gipfel", "title": "Gipfel", "keywords": ["Budapest"]}],
        }
    )
    config = load_config(project.config_path)

    def entry(entry_id: str, text: str) -> Entry:
        title = "Treffen geplant"
        return Entry(
            entry_id,
            None,
            title,
            text,
            "",
            datetime(2025, 10, 20, tzinfo=UTC),
            True,
            content_hash(title, text),
        )

    async def poll(
        entries: list[Entry], fulltexts: dict[str, FullText], screened: str | None = None
    ) -> list[str]:
        monitor = Monitor(config)
        try:
            await monitor.open()
            assert monitor._parse_stories() is not None
            # As a worker reports it: matched under the stories' rules, nothing let through.
            parsed = ParsedFeed(entries, screened=screened or monitor.parse_pool.stories_key)
            with monitor.store.poll_transaction("kurier") as tx:
                changed = tx.upsert_entries(entries)
                diffs = _BatchDiff()
                monitor._match(tx, changed, FeedPollReport("kurier", "ok"), diffs, fulltexts, parsed)
                monitor._diff_batch(diffs)
            return sorted(i["url"] or i["title"] for i in monitor.items("gipfel"))
        finally:
            await monitor.close()

    teaser = "Die Staatschefs wollen sich bald treffen."
    # The article behind the teaser names the story: the writer screens it itself, it matches.
    article = FullText("Die Staatschefs treffen sich in Budapest zum Gipfel.", "ok")
    assert anyio.run(poll, [entry("k-1", teaser)], {"k-1": article}) == ["Treffen geplant"]
    # For the entry's own text the worker's verdict stands: the writer does not screen it again
    # (here a verdict that contradicts the text shows it; a real worker's never does).
    assert anyio.run(poll, [entry("k-2", "Die Staatschefs treffen sich in Budapest.")], {}) == [
        "Treffen geplant"
    ]  # still only k-1
    # The same verdict made under other stories (before they changed) is not taken: k-3 matches.
    in_budapest = entry("k-3", "Die Staatschefs treffen sich in Budapest.")
    assert anyio.run(poll, [in_budapest], {}, "other-stories") == ["Treffen geplant", "Treffen geplant"]


def test_a_match_split_between_worker_and_writer_equals_a_match_in_one_place() -> None:
    """The parse workers compute what the stories' rules say of an item (``Prematch.outcomes``,
    sent pickled); the writer adds what depends on the story state (similarity to the story so far,
    background, remembering). Both halves together give the same results, and leave the same story
    state, as ``match`` on its own, for rules with near-clauses, excludes and similarity."""
    import pickle

    from monitor.match import StoryScreen

    def stories() -> list[StoryMatcher]:
        return [
            shipped(),
            compile_story(story(SIM_RULES), BASELINE),
            compile_story(story(keywords=["Tomahawk", "Marschflugkörper"])),
        ]

    t0 = datetime(2025, 10, 16, tzinfo=UTC)
    items = [
        ("Gipfel in Budapest", BASELINE, t0),
        ("Rubio und Lawrow telefonieren", "Rubio und Lawrow sprachen; Dmitrijew sieht Fortschritte.", t0),
        ("Budapest als Gipfelort?", "Trump könnte Putin in Budapest treffen.", t0 - timedelta(days=60)),
        ("Keine Tomahawks", "Trump liefert vorerst keine Marschflugkörper an Selenskyj.", t0),
        ("Wetter", "Morgen regnet es in München.", t0),
        ("Orbán empfängt", "Der Gipfel von Trump und Putin in Budapest ist abgesagt, sagt Orbán.", None),
        ("Budapest-Marathon", "Beim Budapest-Marathon liefen 30.000 Menschen.", t0),
    ]
    whole, split = stories(), stories()
    prematch = pickle.loads(pickle.dumps(StoryScreen(split).prematch()))  # as a worker gets it
    assert prematch.wants_documents  # the similarity story needs the prepared document
    seen, matched = 0, set()
    for title, text, published in items:
        expected = [m.match(title, text, published) for m in whole]
        matched.update((r.story_id, title) for r in expected if r.matched)
        found = prematch.outcomes(title, text)
        if found is None:
            assert not any(r.terms for r in expected)
            continue
        doc, outcomes = found
        got = [
            m.match(title, text, published, doc=doc, outcome=outcome)
            for m, outcome in zip(split, outcomes, strict=True)
        ]
        assert got == expected
        seen += 1
    assert seen >= 5
    # rules, similarity to the story so far, a near-clause; a background item and a veto do not
    assert ("test", "Rubio und Lawrow telefonieren") in matched
    assert len(matched) >= 4 and ("test", "Budapest als Gipfelort?") not in matched
    for a, b in zip(whole, split, strict=True):
        assert a.state.start == b.state.start and list(a.state.vectors) == list(b.state.vectors)


def test_the_writer_stores_the_same_with_the_workers_outcomes_as_without(project: Project) -> None:
    """Two stories, one of them comparing by similarity: a feed written with what a parse worker
    computed (``story_work.analyse_candidates`` under the monitor's stories: rule outcomes per
    story, the diff against each baseline, sentence analysis where that found news, documents) is
    stored exactly as the same feed written without it, where the writer matches and diffs
    everything itself: the same matches (score, terms, evidence), the same developments and
    sources; also where the text diffed is an extracted article, not the entry's own text."""
    import pickle
    import sqlite3

    from monitor import story_work
    from monitor.fulltext import FullText
    from monitor.parse import Entry, ParsedFeed, content_hash
    from monitor.pipeline import FeedPollReport, Monitor, _BatchDiff

    t0 = datetime(2025, 10, 16, 9, tzinfo=UTC)
    texts = [
        ("Gipfel in Budapest geplant", BASELINE),
        (
            "Rubio und Lawrow telefonieren",
            "Außenminister Rubio und sein Kollege Lawrow haben telefoniert; der Sondergesandte "
            "Dmitrijew sprach von Fortschritten bei den Vorbereitungen.",
        ),
        (
            "Orbán nennt einen Termin",
            "Der Gipfel von Trump und Putin in Budapest soll am 30. Oktober stattfinden, sagte Orbán "
            "am Freitag. Die Hotels der Innenstadt sind ausgebucht.",
        ),
        ("Wetter", "Morgen regnet es in München, übermorgen scheint die Sonne."),
        ("Budapest-Marathon", "Beim Budapest-Marathon liefen 30.000 Menschen durch die Stadt."),
    ]
    entries = [
        Entry(f"k-{i}", f"https://kurier.example/{i}", title, text, "", t0 + timedelta(hours=i), True,
              content_hash(title, text))
        for i, (title, text) in enumerate(texts)
    ]  # fmt: skip

    async def write(mode: str, fulltexts: dict[str, FullText]) -> Path:
        db = project.dir / f"{mode}-{len(fulltexts)}.sqlite3"
        project.write(
            {
                "database": f"sqlite:///{db}",
                "feeds": [{"name": "kurier", "url": "https://kurier.example/rss"}],
                "stories": [
                    {"id": "gipfel", "title": "Gipfel", "keywords": ["Budapest", "Orbán"]},
                    {"id": "treffen", "title": "Treffen", "baseline": {"text": BASELINE}, "rules": SIM_RULES},
                ],
            }
        )
        monitor = Monitor(load_config(project.config_path))
        try:
            await monitor.open()
            parsed = ParsedFeed(list(entries))
            if mode == "worker":  # as a worker gets the stories, and sends the feed back
                payload = monitor._parse_stories()
                assert payload is not None
                key = story_work.payload_key(payload)
                story_work.analyse_candidates(parsed, pickle.loads(payload), key)
                assert len(parsed.outcomes) == 4 and set(parsed.documents) == set(parsed.outcomes)
                assert set(parsed.novelty) == set(parsed.outcomes)
                # the baseline's own text restates it: no story needs its sentences; Orbán's date
                # is news against the baseline of the story that has one
                assert "k-0" not in parsed.sentences and "k-2" in parsed.sentences
                assert not any(n[1] for n in parsed.novelty["k-0"]) and parsed.novelty["k-2"][1][1]
                parsed = pickle.loads(pickle.dumps(parsed))
            with monitor.store.poll_transaction("kurier") as tx:
                changed = tx.upsert_entries(entries)
                report = FeedPollReport("kurier", "ok")
                diffs = _BatchDiff()
                monitor._match(tx, changed, report, diffs, fulltexts, parsed if mode == "worker" else None)
                monitor._diff_batch(diffs)
        finally:
            await monitor.close()
        return db

    def stored(db: Path) -> tuple[list[Any], ...]:
        with sqlite3.connect(db) as conn:
            matches = conn.execute(
                "SELECT m.story_id, i.entry_id, m.score, m.terms, m.evidence FROM story_match m "
                "JOIN item i ON i.id = m.item_id ORDER BY 1, 2"
            ).fetchall()
            developments = conn.execute(
                "SELECT story_id, key, title, score, novel, terms FROM development ORDER BY 1, 2"
            ).fetchall()
            sources = conn.execute(
                "SELECT d.key, i.entry_id, s.sentences FROM development_source s "
                "JOIN development d ON d.id = s.development_id JOIN item i ON i.id = s.item_id ORDER BY 1, 2"
            ).fetchall()
        return matches, developments, sources

    with_workers = stored(anyio.run(write, "worker", {}))
    without = stored(anyio.run(write, "writer", {}))
    assert with_workers == without
    matches, developments, sources = with_workers
    matched = {(story, entry) for story, entry, *_ in matches}
    assert ("treffen", "k-1") in matched  # by similarity to the story so far alone
    assert {"gipfel", "treffen"} == {story for story, _ in matched}
    assert ("gipfel", "k-3") not in matched and developments and sources

    # The first entry restates the baseline; the article behind it brings Orbán's date: the writer
    # diffs the article, not the worker's verdict on the entry's own text.
    article = {"k-0": FullText(texts[2][1], "ok")}
    with_workers = stored(anyio.run(write, "worker", article))
    assert with_workers == stored(anyio.run(write, "writer", article))
    assert "k-0" in {entry for _, entry, _ in with_workers[2]}  # now a source of a development
