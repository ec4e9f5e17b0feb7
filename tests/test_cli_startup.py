"""Start-up of the `monitor` command: what a poll in which nothing changed imports.

Most of a warm `monitor poll` is start-up, and most of start-up is importing. The parsers, matching,
diffing, full text, alerts, the web desk, Alembic, the PostgreSQL dialect and rich are imported by
the code that uses them (see monitor/cli.py); these tests fail when one of them slips back into the
start-up path. They assert which modules are loaded, not how long anything takes (timings belong to
bench/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import STORY, Project
from tests.feeds import FakeEntry, rss
from tests.misbehaving import FAST_FETCH
from tests.servers import FeedServer

# Not needed by a poll in which every feed answers 304.
NOT_FOR_A_WARM_POLL = (
    "feedparser",  # the reference parser (nothing to parse)
    "trafilatura",  # full text
    "simplemma",  # matching's lemmatiser
    "monitor.lexicon",
    "rich",  # terminal output: only on a terminal, or for tables
    "pygments",
    "httpx._main",  # httpx's own CLI (see monitor/__init__.py)
    "fastapi",  # the web desk
    "starlette",
    "uvicorn",
    "alembic",  # migrations: the fast lane checks the schema's revision without it
    "sqlalchemy",  # the database: the SQLite fast lane (monitor.store.lite) serves the 304s
    "sqlmodel",
    "monitor.store.store",
    "monitor.store.models",
    "apprise",  # alert channels
    "jinja2",
    "monitor.alert",
    "monitor.web",
    "monitor.scheduler",
    "monitor.diff",  # matching, diffing and full text: only for new or changed items
    "monitor.match",
    "monitor.fulltext",
)

# `monitor --help` pays for none of it: not the config either (pydantic).
NOT_FOR_IMPORTING_THE_CLI = (
    *NOT_FOR_A_WARM_POLL,
    "pydantic",
    "yaml",
    "monitor.config",
    "sqlalchemy",
    "sqlmodel",
    "httpx",
    "aiohttp",
    "anyio",
    "monitor.store",
    "monitor.pipeline",
    "monitor.fetch",
    "monitor.diff",
    "monitor.match",
)

# The names of the loaded modules (a None entry in sys.modules is an import refused, not a module).
LOADED = "sorted(name for name, module in sys.modules.items() if module is not None)"

# Runs the command like the console script does, then writes the names of the loaded modules and
# whether the garbage collector is on (main() turns it off for start-up only).
RUN_AND_LIST_MODULES = f"""
import gc, json, os, sys
from monitor.cli import main
try:
    main()
finally:
    with open(os.environ["MODULES_OUT"], "w") as fh:
        json.dump({{"modules": {LOADED}, "gc_enabled": gc.isenabled()}}, fh)
"""


def _loaded(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_importing_the_cli_loads_neither_the_config_nor_the_database_nor_http() -> None:
    code = f"import json, sys\nimport monitor.cli\nprint(json.dumps({LOADED}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert _loaded(json.loads(out.stdout), NOT_FOR_IMPORTING_THE_CLI) == []


def test_a_warm_poll_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    project = Project(tmp_path)
    feed = rss([FakeEntry("a1", "Gipfel in Budapest geplant", "Trump und Putin wollen sich treffen.")])
    with FeedServer() as server:
        server.put("/a.xml", feed)
        server.put("/b.xml", feed)
        project.write(
            {
                "fetch": FAST_FETCH,
                "feeds": [{"name": n, "url": server.url(f"/{n}.xml")} for n in ("a", "b")],
                "stories": [STORY],
            }
        )
        first = project.cli("poll", "--json")  # in-process: stores the items and the validators
        assert first.exit_code == 0, first.stderr
        assert [f["status"] for f in first.json()["feeds"]] == ["ok", "ok"]

        modules_out = tmp_path / "modules.json"
        env = {**os.environ, "MODULES_OUT": str(modules_out)}
        warm = subprocess.run(
            [
                sys.executable,
                "-c",
                RUN_AND_LIST_MODULES,
                "--config",
                str(project.config_path),
                "poll",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
    assert warm.returncode == 0, warm.stderr
    assert [f["status"] for f in json.loads(warm.stdout)["feeds"]] == ["not_modified", "not_modified"]
    after = json.loads(modules_out.read_text())
    assert "monitor.pipeline" in after["modules"]  # the list is the poll's, not an empty start
    assert _loaded(after["modules"], NOT_FOR_A_WARM_POLL) == []
    assert after["gc_enabled"]  # off for start-up only
