"""``monitor match --story ID FILE|-``: does a text belong to a story, and why.

The first non-empty line of the text is its title (or ``--title``), the rest its body. The story
state (items already matched, when the story started) comes from the database when it exists, so
the answer is the one the next poll would give; nothing is written.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise click.UsageError(f"FILE: not found: {source}") from None
    except UnicodeDecodeError:
        raise click.UsageError(f"FILE: not UTF-8 text: {source}") from None
    except IsADirectoryError:
        raise click.UsageError(f"FILE: is a directory: {source}") from None
    except OSError as exc:
        raise click.UsageError(f"FILE: cannot read {source}: {exc.strerror or exc}") from None


def _split_title(text: str, title: str | None) -> tuple[str, str]:
    if title is not None:
        return title, text
    lines = text.strip().split("\n", 1)
    return lines[0].strip(), (lines[1] if len(lines) > 1 else "")


def _baseline(config: Any, story: Any) -> str | None:
    import anyio

    from monitor.baseline import ReadOnlyCopies, fetch_baseline_text
    from monitor.fetch import Fetcher

    copies = ReadOnlyCopies(config.database)  # `match` writes nothing: an earlier copy is only read

    async def main() -> str | None:
        if story.baseline is None or story.baseline.url is None:
            return await fetch_baseline_text(config, story, None)
        async with Fetcher(config.fetch) as fetcher:
            return await fetch_baseline_text(config, story, fetcher, copies=copies)

    try:
        return anyio.run(main)
    finally:
        copies.close()


def _story_items(config: Any, story_id: str) -> tuple[list[tuple[datetime | None, str, str]], str | None]:
    """The story so far from the database; an unreadable database is a note, not a failure."""
    from monitor.store import Store
    from monitor.store.database import missing_sqlite_file

    url = config.database
    if missing_sqlite_file(url):
        return [], "no database yet: no story state"
    try:
        store = Store(url)
        try:
            return store.story_item_texts(story_id), None
        finally:
            store.close()
    except Exception as exc:  # the explanation still works without the state
        return [], f"story state not loaded ({type(exc).__name__}: {exc})"


@click.command("match")
@click.option("--story", "story_id", metavar="ID", required=True, help="The story to test against.")
@click.option("--title", default=None, help="Title (default: the first line of the text).")
@click.option("--published", default=None, metavar="ISO", help="Publication time (for 'background').")
@click.option("--json", "as_json", is_flag=True, help="JSON object on stdout.")
@click.argument("source", metavar="FILE|-")
@click.pass_obj
def match_command(
    state: Any, story_id: str, title: str | None, published: str | None, as_json: bool, source: str
) -> None:
    """Explain whether a text matches a story: rules that held, terms, sentences, similarity."""
    from monitor.cli import EXIT_CONFIG, _check_story, _fail, handle_errors, print_json
    from monitor.match import compile_story

    @handle_errors
    def run() -> None:
        config = state.config
        _check_story(config, story_id)
        story = config.story(story_id)
        when: datetime | None = None
        if published is not None:
            try:
                when = datetime.fromisoformat(published.replace("Z", "+00:00"))
            except ValueError:
                _fail(f"--published: {published!r} is not an ISO 8601 time", EXIT_CONFIG)
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
        item_title, body = _split_title(_read(source), title)
        # Read as the poll reads a feed's text: tags dropped, entities decoded ('Wei&szlig;en'),
        # soft hyphens removed; text pasted from a page's source matches as the item would.
        from monitor.parse import html_to_text

        item_title, body = html_to_text(item_title), html_to_text(body)
        matcher = compile_story(story, _baseline(config, story))
        items, note = _story_items(config, story_id)
        matcher.load_story(items)
        result = matcher.match(item_title, body, when, remember=False)
        data = {
            "story": story_id,
            "matched": result.matched,
            "score": result.score,
            "threshold": matcher.rules.threshold,
            "reason": result.reason,
            "rules": list(result.rules),
            "points": [{"rule": label, "points": pts} for label, pts in result.points],
            "terms": list(result.terms),
            "evidence": list(result.evidence),
            "baseline_similarity": result.baseline_similarity,
            "story_similarity": result.story_similarity,
            "background": result.background,
            "story_items": len(items),
            "story_started": matcher.state.start,
            "note": note,
        }
        if as_json:
            print_json(data)
            return
        verdict = "MATCH" if result.matched else "no match"
        click.echo(f"{story_id}: {verdict} - {result.reason}")
        for label, pts in result.points:
            click.echo(f"  +{pts:g}  {label}")
        click.echo(f"terms: {', '.join(result.terms) or '-'}")
        if result.baseline_similarity is not None or result.story_similarity is not None:
            click.echo(
                f"similarity: baseline {result.baseline_similarity}, "
                f"story {result.story_similarity} ({len(items)} story items)"
            )
        if result.evidence:
            click.echo("evidence:")
            for sentence in result.evidence:
                click.echo(f"  - {sentence}")
        if note:
            click.echo(f"note: {note}", err=True)

    run()
