"""Where the migration scripts are and which revision is their head, read without Alembic or
SQLAlchemy: the start-up check (``migrate._at_head``) and the SQLite fast lane (``lite``) need only
that, and importing Alembic costs ~0.1 s of every start."""

from __future__ import annotations

import os
import re
from pathlib import Path

# APScheduler's tables: APScheduler creates them; the migrations, the drift check and the schema
# snapshot leave them alone.
APSCHEDULER_TABLES = frozenset({"tasks", "schedules", "jobs", "job_results", "metadata"})


class MigrationError(Exception):
    """The migrations could not be found or applied."""


def migrations_dir() -> Path:
    """``$MONITOR_MIGRATIONS_DIR``, else ``db/migrations`` of the source tree, else of the cwd."""
    env = os.environ.get("MONITOR_MIGRATIONS_DIR")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[2] / "db" / "migrations",
        Path.cwd() / "db" / "migrations",
    ]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise MigrationError(
        "cannot find the migration scripts (db/migrations); run from the project checkout "
        "or set MONITOR_MIGRATIONS_DIR"
    )


_REVISION_LINE = re.compile(r"^revision\s*(?::[^=\n]*)?=\s*[\"']([^\"'\n]+)[\"']\s*$", re.M)
_DOWN_REVISION_LINE = re.compile(
    r"^down_revision\s*(?::[^=\n]*)?=\s*(?:None|[\"']([^\"'\n]+)[\"'])\s*$", re.M
)


def head_from_scripts() -> str | None:
    """The head revision read from the scripts' ``revision = "…"`` / ``down_revision = …`` lines,
    without Alembic (which imports alembic and execs every script: ~0.1 s on every start). None when
    the scripts are not a plain chain this can read (branches, merges, unusual syntax): then Alembic
    decides."""
    chain = revisions_from_scripts()
    return chain[-1] if chain else None


def revisions_from_scripts() -> list[str] | None:
    """Every revision, oldest first, read as ``head_from_scripts`` reads them; None when the
    scripts are not a plain chain this can read."""
    try:
        versions = migrations_dir() / "versions"
        parent: dict[str, str | None] = {}
        for script in versions.glob("*.py"):
            source = script.read_text(encoding="utf-8")
            rev, down = _REVISION_LINE.findall(source), _DOWN_REVISION_LINE.findall(source)
            if len(rev) != 1 or len(down) != 1 or rev[0] in parent:
                return None
            parent[rev[0]] = down[0] or None
    except (OSError, UnicodeDecodeError, MigrationError):
        return None
    children = [down for down in parent.values() if down is not None]
    if len(children) != len(set(children)) or not set(children) <= set(parent):
        return None  # a branch, or a parent that is not there
    heads = set(parent) - set(children)
    if len(heads) != 1:
        return None
    chain = [heads.pop()]
    while (down := parent[chain[-1]]) is not None:
        chain.append(down)
    return chain[::-1] if len(chain) == len(parent) else None
