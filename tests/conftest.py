from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from monitor.cli import cli
from tests.servers import FeedServer

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

STORY = {
    "id": "budapest-summit",
    "title": "Trump–Putin-Gipfel in Budapest",
    "baseline": {"path": str(ROOT / "stories" / "budapest-summit.md")},
    "keywords": ["Budapest-Gipfel", "Tomahawk", "Selenski", "Selenskyj", "Zelensky"],
}


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Project:
    """A config file in a temporary folder, and ways to run the CLI against it."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.config_path = tmp_path / "feeds.yaml"
        self.db_path = tmp_path / "monitor.sqlite3"

    def write(self, config: dict[str, Any] | str) -> Path:
        if isinstance(config, dict):
            config = {"database": f"sqlite:///{self.db_path}", **config}
            text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
        else:
            text = config
        self.config_path.write_text(text, encoding="utf-8")
        return self.config_path

    def cli(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        """Run the CLI in-process (fast); stdout and stderr kept apart."""
        runner = CliRunner()
        result = runner.invoke(
            cli, ["--config", str(self.config_path), *args], env=env, catch_exceptions=False
        )
        return CliResult(result.exit_code, result.stdout, result.stderr)

    def spawn(self, *args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[str]:
        """Run the CLI as a real process (for the daemon and signals); ``popen``: more arguments
        for ``subprocess.Popen`` (``preexec_fn``, ...)."""
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        return subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(self.config_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=self.dir,
            **popen,
        )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)
