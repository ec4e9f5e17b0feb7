#!/usr/bin/env python3
"""Where the time goes: summarise a ``py-spy record -f raw`` profile by pipeline stage.

    py-spy record -r 200 -f raw -o cold.raw -- .venv/bin/monitor --config X poll
    python3 bench/pyspy_summary.py cold.raw

Samples of idle threads (waiting on a condition, a selector or a pool queue) are dropped, so the
percentages are shares of the CPU actually used. A sample counts for the first stage (in the
order below) that appears anywhere in its stack.
"""

from __future__ import annotations

import collections
import sys

IDLE = (
    "Condition.wait",
    "EpollSelector.select",
    "_PollLikeSelector.select",
    "wait (threading",
    "_worker (concurrent",
)
STAGES = [
    ("simplemma", "compile stories: simplemma dictionary"),
    ("compile_story", "compile stories: other"),
    ("load_story", "compile stories: load the story so far"),
    ("build_baseline", "compile stories: baseline"),
    ("<module> (monitor/cli.py", "imports"),
    ("load_config", "read config"),
    ("_match (monitor/pipeline.py", "match"),
    ("_diff_batch", "diff"),
    ("upsert_entries", "db: upsert entries"),
    ("Session.commit", "db: commit"),
    ("poll_transaction", "db: open transaction / load feed state"),
    ("Store.feed_state", "db: read feed state"),
    ("changed_entry_ids", "db: changed entry ids (full text)"),
    ("_update_health", "db: feed health"),
    ("_write_poll", "db: other"),
    ("parse_pool", "parse (dispatch, pickling)"),
    ("parse_document", "parse"),
    ("Fetcher", "http"),
    ("httpcore", "http"),
    ("h11", "http"),
    ("sync_feeds", "db: sync feeds"),
    ("create_schema", "db: create schema"),
    ("asyncio", "event loop"),
    ("anyio", "event loop"),
]


def main(path: str) -> int:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            leaf = frames[-1]
            if not leaf.strip() or any(x in leaf for x in IDLE):
                continue
            samples = int(n)
            total += samples
            joined = ";".join(frames)
            for key, stage in STAGES:
                if key in joined:
                    counts[stage] += samples
                    break
            else:
                counts["other: " + leaf[:70]] += samples
    print(f"{total} busy samples")
    for stage, samples in counts.most_common(20):
        print(f"{samples / max(total, 1) * 100:5.1f}%  {stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
