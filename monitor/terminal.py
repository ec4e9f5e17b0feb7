"""Terminal output with rich: the poll progress bar (only on a terminal) and the items table.

NO_COLOR is honoured; nothing here is printed with ``--json`` or when stdout is not a terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any


def console() -> Any:
    from rich.console import Console

    return Console(no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def is_terminal() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


@contextmanager
def poll_progress(total: int, enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """A transient bar counting polled feeds (the summary line stays); yields the ``progress``
    callback for ``Monitor.poll``, or None when disabled."""
    if not enabled or total <= 1:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    failed = 0
    with Progress(
        TextColumn("polling"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console(),
        transient=True,
    ) as bar:
        task = bar.add_task("poll", total=total, status="")

        def advance(report: Any) -> None:
            nonlocal failed
            failed += report.status == "error"
            status = f"{report.feed}: {report.status}" + (f"  ({failed} failed)" if failed else "")
            bar.update(task, advance=1, status=status)

        yield advance


def items_table(rows: Sequence[dict[str, Any]], local: Callable[[datetime | None], str]) -> Any:
    """Newest first: time, outlet, title (with its link when the terminal supports links), terms."""
    from rich.style import Style
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False, expand=False, header_style="bold", pad_edge=False)
    table.add_column("published", no_wrap=True, style="dim")
    table.add_column("story", no_wrap=True)
    table.add_column("feed", no_wrap=True, style="cyan")
    table.add_column("title", ratio=1, overflow="fold")
    table.add_column("matched", style="green", overflow="fold")
    for row in rows:
        title = Text(row["title"] or "")
        url = row.get("url") or ""
        if url.startswith(("http://", "https://")):
            title.stylize(Style(link=url))
        table.add_row(local(row["published"]), row["story"], row["feed"], title, ", ".join(row["matched"]))
    return table
