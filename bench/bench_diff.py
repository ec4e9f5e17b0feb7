"""Diff stage speed: matched items per second on one core with a 30-development story state.

Texts are generated from our own German vocabulary (no corpus needed): a baseline, 30 known
developments, and items that mix restatement sentences with new ones. Each ``find_developments``
call gets one feed poll's worth of items (10), as in the pipeline; the known developments are
re-read per call, as the pipeline does.

    .venv/bin/python bench/bench_diff.py [--items 3000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.diff import StoryItem, build_baseline, find_developments
from monitor.store import KnownDevelopment

SUBJECTS = [
    "Präsidentin Berger",
    "Präsident Ostrow",
    "Außenminister Weber",
    "Kanzlerin Huber",
    "Sprecher Malenko",
    "die Regierung in Nordstadt",
    "der Kreml",
    "das Weiße Haus",
    "die EU-Kommission",
    "Ministerin Lindqvist",
]
VERBS = [
    "kündigte an",
    "bestätigte",
    "lehnte ab",
    "verschob",
    "sagte ab",
    "genehmigte",
    "kritisierte",
    "begrüßte",
    "forderte",
    "verhängte",
]
OBJECTS = [
    "den Gipfel in Graz",
    "ein Abkommen über die Tarn",
    "neue Sanktionen",
    "die Lieferung von Turbinen",
    "Gespräche in Wien",
    "einen Waffenstillstand",
    "die Freigabe der Konten",
    "ein Treffen am 12. März",
    "eine Untersuchung der Fischbestände",
    "den Bau eines Staudamms",
    "Hilfen über 300 Millionen Euro",
]
EXTRA = [
    "am Montag",
    "nach einem Telefonat",
    "in Brüssel",
    "überraschend",
    "trotz scharfer Kritik",
    "laut Regierungskreisen",
    "vor Journalisten",
    "auf der Plattform X",
    "in einem Interview",
    "am Abend",
]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(EXTRA)} {rng.choice(OBJECTS)}."


def text(rng: random.Random, n: int) -> str:
    return "\n".join(sentence(rng) for _ in range(n))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(7)
    baseline = build_baseline("bench", text(rng, 25))
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    known = [
        KnownDevelopment(i + 1, "bench", f"d-{i}", f"Entwicklung {i}", text(rng, 4).split("\n"), [], t0)
        for i in range(30)
    ]
    items = [
        StoryItem(
            i,
            "feed",
            f"https://example.org/{i}",
            sentence(rng),
            text(rng, rng.randint(8, 20)),
            t0 + timedelta(minutes=i),
            "new",
        )
        for i in range(args.items)
    ]
    # Warm-up: lemma caches are per process and fill on first sight of a word, as in the daemon.
    find_developments(baseline, known, items[: args.batch])
    started = time.perf_counter()
    flagged = 0
    for start in range(0, len(items), args.batch):
        records = find_developments(baseline, known, items[start : start + args.batch])
        flagged += sum(len(r.sources) for r in records)
    elapsed = time.perf_counter() - started
    rate = len(items) / elapsed
    print(
        f"diff stage: {len(items)} matched items in {elapsed:.2f}s = {rate:,.0f} items/s "
        f"(30 known developments, batches of {args.batch}; {flagged} item-development links)"
    )
    print("target >= 500 items/s:", "ok" if rate >= 500 else "MISSED")


if __name__ == "__main__":
    main()
