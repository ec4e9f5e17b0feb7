#!/usr/bin/env python3
"""Speed of the matching stage alone: items per second on one core, with several stories.

    .venv/bin/python bench/bench_match.py                 # 5 stories, 20,000 items
    .venv/bin/python bench/bench_match.py --items 50000 --json

The stories are the shipped ``budapest-summit`` (rules, similarity, background) plus four more
rule sets written here; the items are generated German news texts (deterministic, ~1,500
characters, about 5 % of them mentioning story terms, as in a real feed mix). Every item is matched
against every story, as the pipeline does; nothing else (no fetch, parse or database) is timed.
Target (issue 3): >= 5,000 items/s.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.config import StoryConfig, load_config  # noqa: E402
from monitor.match import compile_story  # noqa: E402

EXTRA_STORIES = [
    {
        "id": "bahnstreik",
        "title": "Bahnstreik der GDL",
        "rules": {
            "terms": {
                "bahn": ["Deutsche Bahn", "Bahn", "GDL", "EVG"],
                "streik": ["Streik", "Warnstreik", "streiken", "Arbeitskampf"],
                "tarif": ["Tarifverhandlung", "Schlichtung", "Tarifrunde"],
            },
            "match": [
                {"all": ["bahn", "streik"], "near": "sentence", "weight": 2},
                {"all": ["bahn", "tarif"], "weight": 1},
            ],
            "threshold": 2,
        },
    },
    {
        "id": "haushalt",
        "title": "Bundeshaushalt 2026",
        "rules": {
            "terms": {
                "haushalt": ["Haushalt", "Bundeshaushalt", "Etat", "Schuldenbremse"],
                "akteur": ["Klingbeil", "Finanzminister", "Haushaltsausschuss", "Bundestag"],
                "geld": ["Milliarde", "Sondervermögen", "Kredit"],
            },
            "match": [
                {"all": ["haushalt", "akteur"], "near": 30, "weight": 2},
                {"all": ["haushalt", "geld"], "near": "sentence", "weight": 1},
            ],
            "threshold": 2,
        },
    },
    {
        "id": "klimakonferenz",
        "title": "Weltklimakonferenz COP30",
        "rules": {
            "terms": {
                "cop": ["COP30", "Weltklimakonferenz", "*gipfel", "!Alpengipfel"],
                "klima": ["Klima", "Emission", "fossil", "Erderwärmung"],
                "ort": ["Belém", "Brasilien", "Lula"],
            },
            "match": [{"all": ["cop", "klima"], "any": ["ort"], "weight": 2}],
            "exclude": [{"any": ["cop"], "none": ["klima"]}],
            "threshold": 2,
        },
    },
    {
        "id": "nahost",
        "title": "Waffenruhe in Gaza",
        "rules": {
            "terms": {
                "gaza": ["Gaza", "Gazastreifen", "Hamas"],
                "waffenruhe": ["Waffenruhe", "Waffenstillstand", "Geisel", "Friedensplan"],
                "vermittler": ["Katar", "Ägypten", "Witkoff", "Netanjahu"],
            },
            "match": [
                {"all": ["gaza", "waffenruhe"], "near": 40, "weight": 2},
                {"all": ["gaza", "vermittler"], "weight": 1},
            ],
            "threshold": 2,
        },
    },
]

_FILLER_TEXT = (
    "Die Landesregierung stellte am Vormittag ihre Pläne für den Ausbau der Infrastruktur vor. "
    "Nach Angaben des Ministeriums sollen in den kommenden Jahren zusätzliche Mittel fließen. "
    "Kritiker bemängeln, dass die Finanzierung noch nicht gesichert sei und viele Kommunen warten. "
    "Der Verband der Städte und Gemeinden begrüßte die Ankündigung grundsätzlich. "
    "Die Opposition sprach dagegen von einem durchsichtigen Manöver vor der Landtagswahl. "
    "Experten rechnen damit, dass sich die Umsetzung über mehrere Jahre hinziehen wird. "
    "Am Nachmittag tagte der Ausschuss für Verkehr und Wohnen in einer Sondersitzung. "
    "Die Ergebnisse sollen in der kommenden Woche veröffentlicht werden, hieß es aus Regierungskreisen. "
    "Bürgerinitiativen kündigten Proteste gegen einzelne Vorhaben an. "
    "In Bayern, Sachsen und Niedersachsen laufen ähnliche Programme bereits seit dem Frühjahr. "
)
FILLER = _FILLER_TEXT.split(". ")
STORY_SENTENCES = [
    "US-Präsident Trump will Kremlchef Putin in Budapest zu einem Gipfeltreffen treffen",
    "Selenskyj bat im Weißen Haus um Tomahawk-Marschflugkörper für die Ukraine",
    "Die GDL kündigte einen Streik bei der Deutschen Bahn an",
    "Finanzminister Klingbeil verteidigte den Bundeshaushalt im Bundestag",
    "Auf der Weltklimakonferenz in Belém wurde über den Ausstieg aus fossilen Energien gestritten",
    "Katar vermittelt zwischen Israel und der Hamas über eine Waffenruhe im Gazastreifen",
    "Budapest Pride zog Zehntausende an",
    "Ein Tomahawk-Steak braucht Zeit im Ofen",
]


def make_items(n: int, seed: int = 20251017) -> list[tuple[str, str, datetime]]:
    rng = random.Random(seed)
    start = datetime(2025, 10, 1, tzinfo=UTC)
    items = []
    for i in range(n):
        sentences = rng.sample(FILLER, k=min(len(FILLER), 9))
        if rng.random() < 0.05:
            sentences.insert(rng.randrange(len(sentences)), rng.choice(STORY_SENTENCES))
        # A unique number per item keeps caches honest (no two items share a text).
        text = ". ".join(s.strip() for s in sentences if s.strip()) + f". Meldung {i}."
        title = f"{rng.choice(['Bericht', 'Analyse', 'Kommentar', 'Meldung'])} {i}: " + sentences[0][:60]
        items.append((title, text, start + timedelta(minutes=i)))
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    shipped = load_config(ROOT / "feeds.yaml")
    stories = [*shipped.stories] + [StoryConfig.model_validate(s) for s in EXTRA_STORIES]
    baseline = (ROOT / "stories" / "budapest-summit.md").read_text(encoding="utf-8")
    t0 = time.perf_counter()
    matchers = [compile_story(s, baseline if s.id == "budapest-summit" else None) for s in stories]
    compile_s = time.perf_counter() - t0
    items = make_items(args.items)
    # Warm-up (lemma caches, regex), not timed.
    for title, text, published in make_items(500, seed=1):
        for m in matchers:
            m.match(title, text, published)
    matched = 0
    t0 = time.process_time()
    for title, text, published in items:
        for m in matchers:
            matched += m.match(title, text, published).matched
    cpu = time.process_time() - t0
    rate = len(items) / cpu if cpu else float("inf")
    result = {
        "stories": len(matchers),
        "items": len(items),
        "matches": matched,
        "cpu_seconds": round(cpu, 3),
        "items_per_second": round(rate),
        "compile_seconds": round(compile_s, 3),
        "target_items_per_second": 5000,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"matching: {result['items_per_second']:,} items/s on one core "
            f"({len(items):,} items x {len(matchers)} stories in {cpu:.2f} s CPU; "
            f"{matched} matches; compile {compile_s:.2f} s) - target >= 5,000"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
