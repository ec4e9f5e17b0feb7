"""``monitor story show ID`` and the human output of ``monitor developments``.

New words (not covered by the baseline) are highlighted: bold yellow on a colour terminal,
``*word*`` when the output is piped or ``NO_COLOR`` is set, so the explanation survives both.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # imported where used: `monitor` loads this module for every command
    from monitor import diff


def load_baselines(config: Any, story_ids: list[str] | None = None) -> dict[str, diff.BaselineModel]:
    """Baseline models of the configured stories (``url`` baselines are fetched)."""
    import anyio

    from monitor import diff
    from monitor.baseline import OpenedOnce, fetch_baseline_text
    from monitor.cli import _open_store
    from monitor.fetch import Fetcher

    copies = OpenedOnce(lambda: _open_store(config))

    async def main() -> dict[str, diff.BaselineModel]:
        out: dict[str, diff.BaselineModel] = {}
        async with Fetcher(config.fetch) as fetcher:
            for story in config.stories:
                if story_ids and story.id not in story_ids:
                    continue
                text = await fetch_baseline_text(config, story, fetcher, copies=copies)
                out[story.id] = diff.build_baseline(
                    story.id, text, novelty_threshold=getattr(story, "novelty_threshold", None)
                )
        return out

    try:
        return anyio.run(main)
    finally:
        copies.close()


def _plain(console: Any) -> bool:
    return bool(os.environ.get("NO_COLOR")) or not console.is_terminal


def highlight(sentence: str, baseline: diff.BaselineModel | None, plain: bool) -> str:
    """Rich markup of a sentence with the words new against the baseline marked."""
    from rich.markup import escape

    from monitor import diff

    if baseline is None:
        return escape(sentence)
    new = diff.novel_words(sentence, baseline.reference)
    if not new:
        return escape(sentence)
    pattern = re.compile(r"[^\W_]+(?:[-‐‑][^\W_]+)*")
    out, pos = [], 0
    for m in pattern.finditer(sentence):
        out.append(escape(sentence[pos : m.start()]))
        word = m.group(0)
        if word in new:
            out.append(f"*{escape(word)}*" if plain else f"[bold yellow]{escape(word)}[/bold yellow]")
        else:
            out.append(escape(word))
        pos = m.end()
    out.append(escape(sentence[pos:]))
    return "".join(out)


def render_developments(
    console: Any, rows: list[dict[str, Any]], baselines: dict[str, diff.BaselineModel], local: Any
) -> None:
    from rich.markup import escape

    plain = _plain(console)
    for dev in rows:
        baseline = baselines.get(dev["story"])
        parent = f", update of #{dev['update_of']}" if dev.get("update_of") else ""
        console.print(
            f"[bold]#{dev['id']} {escape(dev['title'])}[/bold]  ({escape(dev['story'])}, first seen "
            f"{local(dev['first_seen'])}, score {dev['score']:.2f}, {len(dev['sources'])} sources{parent})"
        )
        for sentence in dev["novel"]:
            console.print("  + " + highlight(sentence, baseline, plain))
        for src in dev["sources"]:
            console.print(
                f"    - {local(src['published'])} {escape(src['feed'])}: {escape(src['title'])} "
                f"{escape(src['url'] or '')}"
            )
        console.print("")


@click.group("story")
def story_group() -> None:
    """The story so far."""


@story_group.command("show")
@click.argument("story_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="JSON object on stdout.")
@click.pass_obj
def show(state: Any, story_id: str, as_json: bool) -> None:
    """Print the story so far: the baseline's facts, then the developments in time order."""
    from monitor.cli import _check_story, _console, _local, _open_store, handle_errors, print_json

    @handle_errors
    def run() -> None:
        config = state.config
        _check_story(config, story_id)
        story = config.story(story_id)
        baseline = load_baselines(config, [story_id]).get(story_id)
        store = _open_store(config)
        rows = sorted(store.developments(story_id), key=lambda d: (d["first_seen"], d["id"]))
        facts = [s.text for s in baseline.sentences] if baseline else []
        if as_json:
            print_json({"story": story_id, "title": story.title, "baseline": facts, "developments": rows})
            return
        console = _console()
        from rich.markup import escape

        console.print(f"[bold]{escape(story.title)}[/bold]  ({story_id})")
        console.print("\n[bold]Baseline[/bold]")
        for fact in facts:
            console.print(f"  • {escape(fact)}")
        console.print(f"\n[bold]Developments[/bold] ({len(rows)})")
        if not rows:
            console.print("  none yet")
        render_developments(console, rows, {story_id: baseline} if baseline else {}, _local)

    run()
