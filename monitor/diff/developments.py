"""Developments: group the items that report the same new fact; keep the story moving. Pure.

For each matched item (oldest first; of items of the same time the one that says most first, see
``diff_items``):

1. score it against the baseline: no novel sentence, or an item score below the story's
   threshold -> a restatement, no development;
2. score it again against the story so far (baseline + known developments + the ones created
   earlier in this batch): when what is left still reaches the threshold, the item states a new
   fact -> a new development (``update_of`` the closest known one when it builds on it);
3. otherwise its news is already known: it becomes one more source of the development whose
   new vocabulary it shares most (same key -> the store merges the source, no second alert).

Keys are fingerprints of the seed item's novel sentences: a re-run of the same poll after a crash
computes the same keys, so nothing is created twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.diff.model import BaselineModel, Reference, Sentence, analyse, split_sentences
from monitor.diff.novelty import SentenceNovelty, item_sentences, score_item
from monitor.store import DevelopmentRecord, KnownDevelopment, SourceRecord
from monitor.text import fold

MAX_NOVEL = 6  # novel sentences kept per development
MAX_TERMS = 80
UPDATE_OF_MIN = 0.3  # share of an item's new vocabulary a known development must hold to be its parent
# Clustering: an item opens a new development when what the story does not know yet scores at least
# NEW_DEVELOPMENT_FACTOR x threshold, or reaches the threshold on a subject (new nouns and names) that
# shares less than ATTACH_AFFINITY with every known development. Otherwise it is one more source.
NEW_DEVELOPMENT_FACTOR = 2.0
ATTACH_AFFINITY = 0.2
# Within one news cycle, outlets report the same events: an item sharing any new noun or name with a
# development first seen that close joins it, unless it scores STRONG_FACTOR x threshold on its own.
NEWS_CYCLE = timedelta(hours=48)
STRONG_FACTOR = 5.0
TITLE_MAX = 120
# Coverage published more than this before the story started is what the baseline summarises (or
# older): background, never a development. The story's start is when the baseline was written (see
# ``background_before``); a day of grace covers time zones and the baseline's own news cycle.
BACKGROUND_GRACE = timedelta(days=1)


def background_before(story_start: datetime | None) -> datetime | None:
    """Items published before this are background for a story that started at ``story_start``."""
    return None if story_start is None else story_start - BACKGROUND_GRACE


# An item diffed against a story's baseline (``baseline_novelty``): its score and its novel
# sentences, none kept for a restatement (the diff reads them only for an item with news).
BaselineNovelty = tuple[float, tuple[SentenceNovelty, ...]]


@dataclass(frozen=True, slots=True)
class StoryItem:
    """A matched item as the diff stage sees it."""

    item_id: int
    feed: str
    url: str | None
    title: str
    text: str
    published: datetime
    kind: str  # "new" | "updated"
    previous_title: str | None = None
    previous_text: str | None = None
    # ``item_sentences(title, text)`` when already computed (by the parse worker), else None.
    sentences: tuple[tuple[Sentence, bool], ...] | None = None
    # ``baseline_novelty`` against this story's baseline when already computed (by the parse
    # worker), else None. With it, a restatement needs no ``sentences``.
    novelty: BaselineNovelty | None = None


def baseline_novelty(baseline: BaselineModel, sentences: Sequence[tuple[Sentence, bool]]) -> BaselineNovelty:
    """Step 1 of the diff for a new item (``item_sentences`` of its title and text): its score
    against the baseline and its novel sentences; () when it restates the baseline (a score below
    the story's threshold, or no novel sentence). Depends on the item and the baseline alone: the
    parse workers compute it (``monitor.story_work``)."""
    score, novel = score_item(sentences, baseline.reference, baseline.key_terms)
    if _restates(score, novel, baseline.novelty_threshold):
        return score, ()
    return score, tuple(novel)


def _restates(score: float, novel: Sequence[SentenceNovelty], threshold: float) -> bool:
    """Step 1's verdict: the item states nothing the baseline does not (a score below the story's
    threshold, or no novel sentence)."""
    return score < threshold or not novel


@dataclass(slots=True)
class _Dev:
    key: str
    title: str
    score: float
    sentences: list[Sentence]
    terms: set[str]  # vocabulary new against the baseline: what this development is about
    first_seen: datetime
    known_id: int | None = None  # set for developments already in the database
    update_of: int | None = None
    sources: dict[int, list[str]] = field(default_factory=dict)
    created_here: bool = False


@dataclass(frozen=True, slots=True)
class ItemDiff:
    """The diff of one item, for explanations (``monitor match``-style tools and tests)."""

    item_id: int
    baseline_score: float
    story_score: float
    novel: list[SentenceNovelty]  # against the baseline (none for a restatement diffed ahead)
    residual: list[SentenceNovelty]  # against the story so far
    verdict: str  # background | restatement | new | known
    development_key: str | None


def _fact_vocab(sentences: Sequence[SentenceNovelty]) -> set[str]:
    """The new nouns and names of novel sentences: what a development is about."""
    out: set[str] = set()
    for s in sentences:
        facts = s.sentence.nouns | s.sentence.names
        out.update(t for t in s.new_terms if t in facts and "-" not in t)
        out.update(s.new_names)
    return out


def _closest(vocab: set[str], devs: Sequence[_Dev]) -> tuple[_Dev | None, float]:
    """The development whose subject the item shares most (overlap of new nouns and names)."""
    best, best_affinity = None, -1.0
    for dev in devs:
        affinity = len(vocab & dev.terms) / min(len(vocab), len(dev.terms)) if vocab and dev.terms else 0.0
        if affinity > best_affinity:
            best, best_affinity = dev, affinity
    return best, max(best_affinity, 0.0)


def _opens_development(story_score: float, threshold: float, affinity: float, recent_affinity: float) -> bool:
    """Does an item whose news is not a restatement open a new development, or is it one more
    report of a known one (no second alert)? ``story_score``: what the story so far does not know;
    ``affinity``/``recent_affinity``: subject overlap with the closest known development (of any
    time / first seen within the same news cycle)."""
    if story_score < threshold:
        return False  # its news is known
    if story_score >= STRONG_FACTOR * threshold:
        return True  # plainly a story line of its own
    if recent_affinity > 0:
        return False  # same news cycle, same subject: coverage of the same development
    return story_score >= NEW_DEVELOPMENT_FACTOR * threshold or affinity < ATTACH_AFFINITY


def _strongest(sentences: Sequence[SentenceNovelty]) -> list[SentenceNovelty]:
    """The ``MAX_NOVEL`` strongest novel sentences (weighted by position), in text order."""
    ranked = sorted(sentences, key=lambda s: s.score * s.weight, reverse=True)[:MAX_NOVEL]
    keep = {id(s) for s in ranked}
    return [s for s in sentences if id(s) in keep]


def _key(story_id: str, novel: Sequence[SentenceNovelty]) -> str:
    material = "\n".join(sorted(fold(s.text) for s in novel))
    digest = hashlib.blake2b(f"{story_id}\x00{material}".encode(), digest_size=12).hexdigest()
    return f"d-{digest}"


def _title(item: StoryItem, novel: Sequence[SentenceNovelty]) -> str:
    """The headline says what the news is; for an update (or an item without one), its strongest
    new sentence."""
    if item.kind != "updated" and item.title.strip():
        text = item.title.strip()
    else:
        text = max(novel, key=lambda s: s.score * s.weight).text if novel else item.title
    text = " ".join(text.split())
    if len(text) > TITLE_MAX:
        text = text[: TITLE_MAX - 1].rsplit(" ", 1)[0] + "…"
    return text


def _against_previous(item: StoryItem) -> bool:
    """An updated item is diffed against its previous version (see ``_sentences_for``)."""
    return item.kind == "updated" and item.previous_text is not None


def _sentences_for(item: StoryItem) -> tuple[Sequence[tuple[Sentence, bool]], list[Sentence]]:
    """(sentences to diff, extra reference). An updated item is diffed against its previous
    version: its headline is left out (a corrected headline is not news) and the previous text
    joins the reference, so only what the update added can be novel."""
    if _against_previous(item):
        assert item.previous_text is not None
        previous = [analyse(s) for s in split_sentences(f"{item.previous_title or ''}\n{item.previous_text}")]
        before = {fold(s.text) for s in previous}
        # What an update adds is its whole news: weigh it like a headline.
        added = [(s, True) for s, _ in item_sentences("", item.text) if fold(s.text) not in before]
        return added, previous
    if item.sentences is not None:
        return item.sentences, []
    return item_sentences(item.title, item.text), []


# Where an item goes in the diff (``diff_items``), and its sentences once analysed (``_sentences_for``).
_Order = tuple[datetime, float, bytes, str, int]
_Analysed = tuple[Sequence[tuple[Sentence, bool]], list[Sentence]]


def _content_order(item: StoryItem) -> bytes:
    """An order of items by their content alone (not their ids, feeds or links, which depend on
    write order and on where the item was found)."""
    material = f"{item.title}\x00{item.text}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(material, digest_size=8).digest()


def diff_items(
    baseline: BaselineModel,
    known: Sequence[KnownDevelopment],
    items: Sequence[StoryItem],
    *,
    threshold: float | None = None,
    story_start: datetime | None = None,
) -> tuple[list[DevelopmentRecord], list[ItemDiff]]:
    """Developments (new ones and sources for existing ones) and the per-item explanation, oldest
    item first (items of the same time in the order explained below). ``story_start``: when the
    story started (the baseline's date); older items are background."""
    threshold = baseline.novelty_threshold if threshold is None else threshold
    cutoff = background_before(story_start)
    story = baseline.reference.copy()
    devs: list[_Dev] = []
    for k in known:
        sentences = [analyse(s) for s in k.novel]
        terms = set(k.terms)
        devs.append(_Dev(k.key, k.title, 0.0, sentences, terms, k.first_seen, known_id=k.id))
        story.extend(sentences)

    # Step 1, against the baseline alone: independent of the order of the items.
    diffs: list[tuple[_Order, ItemDiff]] = []
    news: list[tuple[_Order, StoryItem, float, list[SentenceNovelty], _Analysed | None]] = []
    for item in items:
        if cutoff is not None and item.published < cutoff:
            order = (item.published, 0.0, _content_order(item), item.feed, item.item_id)
            diffs.append((order, ItemDiff(item.item_id, 0.0, 0.0, [], [], "background", None)))
            continue
        ahead = item.novelty
        if ahead is not None and threshold == baseline.novelty_threshold and not _against_previous(item):
            # Step 1 done by the parse worker (``baseline_novelty``): the same score, the same novel
            # sentences, and a restatement's sentences not even analysed here.
            base_score, novel = ahead[0], list(ahead[1])
            restates = not novel
            analysed = None  # not needed for a restatement
        else:
            analysed = sentences, previous = _sentences_for(item)
            base_ref = baseline.reference
            if previous:
                base_ref = base_ref.copy()
                base_ref.extend(previous)
            base_score, novel = score_item(sentences, base_ref, baseline.key_terms)
            restates = _restates(base_score, novel, threshold)
        # Oldest first. Reports of the same time (day-precise dates; a wire copy in several feeds)
        # strongest first, then in an order of their content: the report that says most opens the
        # development and the others join it, whichever feed was fetched or written first (the
        # item id, i.e. write order, is the last resort, for identical copies in one feed).
        order = (item.published, -base_score, _content_order(item), item.feed, item.item_id)
        if restates:
            diffs.append((order, ItemDiff(item.item_id, base_score, 0.0, novel, [], "restatement", None)))
        else:
            news.append((order, item, base_score, novel, analysed))

    # Steps 2 and 3, against the story so far, which grows with each new development.
    for order, item, base_score, novel, analysed in sorted(news, key=lambda n: n[0]):
        sentences, previous = analysed if analysed is not None else _sentences_for(item)
        story_ref = story
        if previous:
            story_ref = story.copy()
            story_ref.extend(previous)
        story_score, residual = score_item(sentences, story_ref, baseline.key_terms)
        vocab = _fact_vocab(novel)
        best, affinity = _closest(vocab, devs)
        recent, recent_affinity = _closest(
            vocab, [d for d in devs if abs(item.published - d.first_seen) <= NEWS_CYCLE]
        )
        opens = _opens_development(story_score, threshold, affinity, recent_affinity)
        if not opens and recent is not None and recent_affinity > 0:
            best = recent  # the same news cycle, the same subject
        if opens or best is None:
            chosen = residual if residual else novel
            key = _key(baseline.story_id, chosen)
            parent = best.known_id if best is not None and affinity >= UPDATE_OF_MIN else None
            kept = _strongest(chosen)
            dev = _Dev(
                key=key,
                title=_title(item, chosen),
                score=story_score if residual else base_score,
                sentences=[s.sentence for s in kept],
                terms=_fact_vocab(chosen) | vocab,
                first_seen=item.published,
                update_of=parent,
                created_here=True,
            )
            dev.sources[item.item_id] = [s.text for s in kept]
            devs.append(dev)
            story.extend(dev.sentences)
            diffs.append(
                (order, ItemDiff(item.item_id, base_score, story_score, novel, residual, "new", key))
            )
        else:
            assert best is not None
            best.sources.setdefault(item.item_id, [s.text for s in _strongest(novel)])
            verdict = ItemDiff(item.item_id, base_score, story_score, novel, residual, "known", best.key)
            diffs.append((order, verdict))

    records = []
    for dev in devs:
        if not dev.sources:
            continue
        records.append(
            DevelopmentRecord(
                story_id=baseline.story_id,
                key=dev.key,
                title=dev.title,
                score=round(dev.score, 3),
                novel=[s.text for s in dev.sentences][:MAX_NOVEL],
                terms=sorted(dev.terms)[:MAX_TERMS],
                sources=[SourceRecord(item_id, sents) for item_id, sents in dev.sources.items()],
                first_seen=dev.first_seen,
                update_of=dev.update_of,
            )
        )
    return records, [d for _, d in sorted(diffs, key=lambda d: d[0])]


def find_developments(
    baseline: BaselineModel,
    known: Sequence[KnownDevelopment],
    items: Sequence[StoryItem],
    *,
    story_start: datetime | None = None,
) -> list[DevelopmentRecord]:
    """The diff stage as the pipeline calls it."""
    return diff_items(baseline, known, items, story_start=story_start)[0]


def novel_words(sentence: str, reference: Reference) -> set[str]:
    """Folded surface words of a sentence that the reference does not cover (for highlighting)."""
    from monitor.diff.model import _TOKEN_RE, _parts

    out = set()
    for match in _TOKEN_RE.finditer(sentence):
        token = match.group(0)
        parts = _parts(token)
        if not parts:
            continue
        term = "-".join(parts)
        if term in reference.vocab:
            continue
        if reference.covers(term) < 1.0 and analyse(token).terms:
            out.add(token)
    return out
