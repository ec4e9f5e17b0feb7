"""The parse pool: many parses at once go to worker processes, results equal the in-process parse,
and a broken pool falls back to threads without losing a parse."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime

import anyio
import pytest

from monitor import parse_pool
from monitor.fastparse import parse_feed_fast
from monitor.parse import parse_feed
from monitor.parse_pool import ParsePool, parse_document
from tests.feeds import FakeEntry, rss

FETCHED_AT = datetime(2025, 10, 22, 18, 0, tzinfo=UTC)


def _feed(i: int, n: int = 20, slow: bool = True) -> bytes:
    """A feed; ``slow`` ones carry a DOCTYPE, which the fast parser leaves to feedparser."""
    entries = [
        FakeEntry(
            guid=f"feed{i}-item{j}",
            title=f"Gipfel in Budapest: Meldung {j} aus Feed {i}",
            text=f"Die Außenministerin äußerte sich zur Straßenblockade Nummer {j}. Weitere Details folgen.",
            link=f"https://zeitung{i}.example/artikel/{j}.html?utm_source=rss",
            published=datetime(2025, 10, 20, 8, j % 60, tzinfo=UTC),
        )
        for j in range(n)
    ]
    body = rss(entries, title=f"Zeitung {i}").encode("utf-8")
    return body.replace(b"?>\n<rss", b"?>\n<!DOCTYPE rss>\n<rss", 1) if slow else body


CTYPE = "application/rss+xml; charset=utf-8"


async def _parse_all(pool: ParsePool, bodies: list[bytes]) -> list:
    results: list = [None] * len(bodies)

    async def one(i: int) -> None:
        results[i] = await pool.parse(bodies[i], f"https://zeitung{i}.example/rss", FETCHED_AT, CTYPE)

    async with anyio.create_task_group() as tg:
        for i in range(len(bodies)):
            tg.start_soon(one, i)
    return results


def _reference(bodies: list[bytes]) -> list:
    return [
        parse_feed(b, url=f"https://zeitung{i}.example/rss", fetched_at=FETCHED_AT, content_type=CTYPE)
        for i, b in enumerate(bodies)
    ]


def test_slow_documents_and_fast_path() -> None:
    slow, fast = _feed(1), _feed(1, slow=False)
    assert b"<!DOCTYPE rss>" in slow
    assert parse_feed_fast(slow, url="https://z.example/", fetched_at=FETCHED_AT, content_type=CTYPE) is None
    assert (
        parse_feed_fast(fast, url="https://z.example/", fetched_at=FETCHED_AT, content_type=CTYPE) is not None
    )


def test_fast_path_feeds_never_start_the_pool() -> None:
    bodies = [_feed(i, slow=False) for i in range(12)]
    pool = ParsePool(workers=2)
    try:
        assert anyio.run(_parse_all, pool, bodies) == _reference(bodies)
        assert (pool.parsed_fast, pool.parsed_in_pool, pool.parsed_in_thread) == (12, 0, 0)
        assert pool.parsed_by_workers == 0
        assert pool._executor is None
    finally:
        pool.close()


def test_concurrent_parses_use_worker_processes_and_match_reference() -> None:
    bodies = [_feed(i) for i in range(12)]
    pool = ParsePool(workers=2)
    try:
        results = anyio.run(_parse_all, pool, bodies)
        assert results == _reference(bodies)
        assert pool.parsed_in_pool >= 10  # all but the first one or two went to the pool
        assert pool.parsed_in_pool + pool.parsed_in_thread == len(bodies)
    finally:
        pool.close()


def test_single_small_parse_stays_in_a_thread() -> None:
    pool = ParsePool(workers=2)
    try:
        body = _feed(1)
        result = anyio.run(pool.parse, body, "https://zeitung1.example/rss", FETCHED_AT, CTYPE)
        assert result == parse_document(body, "https://zeitung1.example/rss", FETCHED_AT, CTYPE)
        assert (pool.parsed_in_thread, pool.parsed_in_pool) == (1, 0)
        assert pool._executor is None  # no processes started for one small feed
    finally:
        pool.close()


def test_large_body_goes_to_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_pool, "POOL_MIN_BYTES", 1000)
    pool = ParsePool(workers=2)
    try:
        body = _feed(2, n=30)
        assert len(body) > 1000
        result = anyio.run(pool.parse, body, "https://zeitung2.example/rss", FETCHED_AT, CTYPE)
        assert result == parse_document(body, "https://zeitung2.example/rss", FETCHED_AT, CTYPE)
        assert pool.parsed_in_pool == 1
    finally:
        pool.close()


def test_one_core_means_threads_only() -> None:
    pool = ParsePool(workers=1)
    bodies = [_feed(i, n=5) for i in range(6)]
    results = anyio.run(_parse_all, pool, bodies)
    assert results == _reference(bodies)
    assert (pool.parsed_in_pool, pool.parsed_in_thread) == (0, 6)
    pool.close()


def test_killed_worker_falls_back_to_threads_without_losing_parses() -> None:
    bodies = [_feed(i) for i in range(8)]
    pool = ParsePool(workers=2)
    try:
        first = anyio.run(_parse_all, pool, bodies)
        assert pool.parsed_in_pool > 0
        # Kill the worker processes behind the pool's back (as the OOM killer would).
        executor = pool._executor
        assert executor is not None
        for pid in list(executor._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        second = anyio.run(_parse_all, pool, bodies)
        assert second == first == _reference(bodies)
        assert pool._broken
        assert pool.parsed_in_thread >= len(bodies)
        # Once broken, later parses go straight to threads.
        before = pool.parsed_in_thread
        anyio.run(_parse_all, pool, bodies[:3])
        assert pool.parsed_in_thread == before + 3
    finally:
        pool.close()


def test_fast_path_and_fallback_give_the_reference_result() -> None:
    good = _feed(3)
    broken = good.replace(b"</channel>", b"")  # not well-formed: feedparser's loose parser takes it
    for body in (good, broken):
        assert parse_document(body, "https://z.example/rss", FETCHED_AT, CTYPE) == parse_feed(
            body, url="https://z.example/rss", fetched_at=FETCHED_AT, content_type=CTYPE
        )


def test_a_prestarted_pool_takes_fast_parses_off_the_main_process() -> None:
    bodies = [_feed(i, slow=False) for i in range(12)]
    pool = ParsePool(workers=2)
    try:
        pool.prestart()
        assert pool.running
        results = anyio.run(_parse_all, pool, bodies)
        assert results == _reference(bodies)
        # Every document taken by the fast parser, all but the first of the burst in a worker.
        assert (pool.parsed_fast, pool.parsed_in_pool, pool.parsed_in_thread) == (12, 0, 0)
        assert pool.parsed_by_workers >= 11
        executor = pool._executor
        assert executor is not None and len(executor._processes) == 2  # type: ignore[attr-defined]
    finally:
        pool.close()


def test_entries_survive_the_trip_from_a_worker_unchanged() -> None:
    import dataclasses
    import pickle

    parsed = parse_document(_feed(1, n=3, slow=False), "https://zeitung1.example/feed.xml", FETCHED_AT)
    undated = dataclasses.replace(parsed.entries[0], published_from_feed=False, url=None)
    for entry in [*parsed.entries, undated]:
        again = pickle.loads(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
        assert again == entry  # every field, in order (Entry.__reduce__ lists them by hand)
        assert [getattr(again, f.name) for f in dataclasses.fields(again)] == [
            getattr(entry, f.name) for f in dataclasses.fields(entry)
        ]


def _mixed_feed(i: int) -> bytes:
    """Half the entries mention Budapest (in the title or only in the text), half do not."""
    entries = [
        FakeEntry(
            guid=f"feed{i}-item{j}",
            title="Gipfel in Budapest" if j % 4 == 0 else f"Meldung {j}",
            text=(
                f"Die Außenministerin reist am Montag nach Budapest und trifft dort Ministerpräsident Orbán "
                f"zu Gesprächen über Sanktionen ({j})."
                if j % 4 == 1
                else f"Der Stadtrat beschließt den Haushalt Nummer {j}. Die Opposition ist dagegen."
            ),
            link=f"https://zeitung{i}.example/artikel/{j}.html",
            published=datetime(2025, 10, 20, 8, j, tzinfo=UTC),
        )
        for j in range(8)
    ]
    return rss(entries, title=f"Zeitung {i}").encode("utf-8")


def _stories(*configs: dict) -> tuple[list, list, bytes]:
    """Compiled stories, their baselines and the payload the monitor gives its parse workers."""
    from monitor.config import StoryConfig
    from monitor.diff import build_baseline
    from monitor.match import StoryScreen, compile_story
    from monitor.story_work import StoryWork

    stories = [StoryConfig.model_validate(c) for c in configs]
    texts = [c.get("baseline", {}).get("text") for c in configs]
    matchers = [compile_story(story, text) for story, text in zip(stories, texts, strict=True)]
    baselines = [build_baseline(story.id, text) for story, text in zip(stories, texts, strict=True)]
    return matchers, baselines, StoryWork.build(StoryScreen(matchers), baselines).payload()


GIPFEL = {
    "id": "gipfel",
    "title": "Gipfel",
    "keywords": ["Budapest"],
    "baseline": {"text": "Budapest ist die Hauptstadt Ungarns. In Budapest regnet es."},
}
ORBAN = {"id": "orban", "title": "Orbán", "keywords": ["Orbán"]}


def test_workers_analyse_the_entries_a_story_may_match() -> None:
    """With the stories set, a worker returns, for exactly the entries some story's terms occur in,
    each story's rule outcome and diff against its baseline, equal to what the writer computes
    itself, the sentence analysis for the entries with news against a baseline (and the prepared
    document only when a story compares by similarity); the entries are the reference parse's.
    Without stories, nothing is analysed."""
    from monitor.diff import baseline_novelty
    from monitor.diff.novelty import item_sentences
    from monitor.match import prepare
    from monitor.story_work import payload_key

    matchers, baselines, payload = _stories(GIPFEL, ORBAN)
    bodies = [_mixed_feed(i) for i in range(8)]
    pool = ParsePool(workers=2)
    try:
        pool.prestart()
        pool.stories = payload
        assert pool.stories_key == payload_key(payload)
        results = anyio.run(_parse_all, pool, bodies)
        assert pool.parsed_by_workers >= 6  # all but the first of the burst
        news = restated = 0
        for parsed, reference in zip(results, _reference(bodies), strict=True):
            assert parsed.entries == reference.entries
            if parsed.outcomes:  # parsed in a worker
                assert parsed.screened == pool.stories_key
                wanted = {e.entry_id for e in parsed.entries if "Budapest" in e.title + e.text}
                assert set(parsed.novelty) == set(parsed.outcomes) == wanted and len(wanted) == 4
                assert not parsed.documents  # no story needs them
                for entry in parsed.entries:
                    if entry.entry_id not in wanted:
                        continue
                    sentences = item_sentences(entry.title, entry.text)
                    doc = prepare(entry.title, entry.text)
                    outcomes = parsed.outcomes[entry.entry_id]
                    assert outcomes == tuple(m.rule_set.outcome(doc) for m in matchers)
                    assert outcomes[0] is not None
                    assert (outcomes[1] is not None) == ("Orbán" in entry.text)
                    for m, outcome in zip(matchers, outcomes, strict=True):
                        assert m.match(entry.title, entry.text, outcome=outcome, remember=False) == m.match(
                            entry.title, entry.text, remember=False
                        )
                    novelty = parsed.novelty[entry.entry_id]
                    assert novelty == tuple(
                        None if o is None else baseline_novelty(b, sentences)
                        for o, b in zip(outcomes, baselines, strict=True)
                    )
                    if any(n is not None and n[1] for n in novelty):
                        assert parsed.sentences[entry.entry_id] == sentences
                        news += 1
                    else:
                        assert entry.entry_id not in parsed.sentences
                        restated += 1
        assert news and restated  # both kinds were seen
        assert sum(bool(p.outcomes) for p in results) == pool.parsed_by_workers
        pool.stories = None
        assert all(not p.outcomes for p in anyio.run(_parse_all, pool, bodies))
    finally:
        pool.close()


def test_each_worker_is_sent_the_stories_until_it_holds_them() -> None:
    """A parse task names the stories by key; the payload goes along until a worker has parsed with
    it (and again after the stories change). A worker that does not hold the stories a task names
    (one that lost them, one that joined later) says so and gets the task again with them: every
    worker parse is analysed, whichever worker took it, and once every worker holds them no task
    carries the payload any more."""
    _, _, payload = _stories(GIPFEL)
    bodies = [_mixed_feed(i) for i in range(8)]
    pool = ParsePool(workers=2)

    def parse(batch: list[bytes]) -> int:
        """Parses in workers, each analysed under the pool's current stories."""
        before = pool.parsed_by_workers
        results = anyio.run(_parse_all, pool, batch)
        in_workers = pool.parsed_by_workers - before
        assert sum(p.screened == pool.stories_key for p in results) == in_workers
        assert all(p.outcomes for p in results if p.screened)
        return in_workers

    def until_both_workers_hold_them() -> None:
        for _ in range(100):
            assert pool._current is not None
            if len({pid for pid in pool._current.holders if pid > 0}) == 2:
                return
            parse(bodies[:2])
        raise AssertionError("one worker took every task")

    try:
        pool.prestart()
        pool.stories = payload
        assert parse(bodies) >= 6
        assert pool.stories_sent >= 1
        until_both_workers_hold_them()
        sent, resent = pool.stories_sent, pool.stories_resent
        assert sum(parse(bodies[:2]) for _ in range(6)) >= 6  # one of each pair in a worker
        assert (pool.stories_sent, pool.stories_resent) == (sent, resent)  # key only, no one asked

        _, _, other = _stories(ORBAN)
        pool.stories = other  # new stories: sent along again
        assert parse(bodies) >= 6
        assert pool.stories_sent > sent
        until_both_workers_hold_them()

        pool.stories = payload  # the first stories again, which the workers no longer hold...
        assert pool._current is not None
        pool._current.holders.add(-1)  # ... as if a worker (gone since) had parsed with them
        resent = pool.stories_resent
        assert parse(bodies) >= 6  # key only: a worker asks, gets them again with the task
        assert pool.stories_resent > resent
        until_both_workers_hold_them()
        assert not pool._current.lacking  # the payload goes along no more
    finally:
        pool.close()


def test_a_parse_sent_while_the_pool_shuts_down_is_done_here() -> None:
    """A pool shut down between a parse's decision to use it and its submission (another parse
    broke it) does not fail the poll: that parse runs in a thread."""
    _, _, payload = _stories(GIPFEL)
    bodies = [_mixed_feed(i) for i in range(4)]
    pool = ParsePool(workers=2)
    try:
        pool.prestart()
        pool.stories = payload
        assert pool._executor is not None
        pool._executor.shutdown(wait=True)  # still the pool's executor, no longer taking work
        results = anyio.run(_parse_all, pool, bodies)
        assert [p.entries for p in results] == [r.entries for r in _reference(bodies)]
        assert pool.parsed_by_workers == 0
    finally:
        pool.close()


def test_the_stories_are_asked_for_once_before_the_first_worker_parse() -> None:
    """``stories_source`` (the monitor compiles its stories) is called once, before any worker
    parse, so every worker parse analyses; if it fails, parsing goes on without analysis."""
    from monitor.story_work import payload_key

    calls: list[int] = []

    def source():  # type: ignore[no-untyped-def]
        calls.append(1)
        return _stories(GIPFEL)[2]

    bodies = [_mixed_feed(i) for i in range(8)]
    pool = ParsePool(workers=2)
    try:
        pool.prestart()
        pool.stories_source = source
        results = anyio.run(_parse_all, pool, bodies)
        assert calls == [1]
        assert pool.parsed_by_workers >= 6
        assert sum(len(p.novelty) == 4 and len(p.outcomes) == 4 for p in results) == pool.parsed_by_workers
        assert pool.stories is not None
        assert all(p.screened == payload_key(pool.stories) for p in results if p.outcomes)
    finally:
        pool.close()

    def failing():  # type: ignore[no-untyped-def]
        raise ValueError("story does not compile")

    pool = ParsePool(workers=2)
    try:
        pool.prestart()
        pool.stories_source = failing
        results = anyio.run(_parse_all, pool, bodies)
        assert [p.entries for p in results] == [r.entries for r in _reference(bodies)]
        assert pool.parsed_by_workers >= 6 and not any(p.outcomes for p in results)
    finally:
        pool.close()
