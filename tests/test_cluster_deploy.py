"""The deployment examples (deploy/) stay consistent with the code: docker can't run here, so check
what can be checked: the files parse, every node has its own stable id, the commands and
environment overrides they use exist, the ops port matches the config default."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import yaml

from monitor.config import OpsConfig, parse_config
from tests.conftest import ROOT, Project

DEPLOY = ROOT / "deploy"


def _monitor_args(args: list[str], project: Project) -> None:
    """The CLI accepts this command line (checked with --help, so nothing runs)."""
    result = project.cli(*args, "--help")
    assert result.exit_code == 0, (args, result.stderr)


def test_docker_compose_runs_postgres_and_three_nodes_with_own_ids(project: Project) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    nodes = {name: svc for name, svc in services.items() if name.startswith("monitor-")}
    assert "postgres" in services and len(nodes) == 3
    ids = []
    project.write({"feeds": []})
    for svc in nodes.values():
        command = svc["command"]
        assert command[:2] == ["run", "--node-id"]
        ids.append(command[2])
        _monitor_args(command[:1], project)
        env = svc["environment"]
        assert env["MONITOR_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert any(p.startswith("127.0.0.1:") for p in svc["ports"]), "ops port published beyond loopback"
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
        # The environment overrides the compose file relies on are real config keys.
        config = parse_config("feeds: []\n", env={k: str(v) for k, v in env.items()})
        assert config.ops.listen == env["MONITOR_OPS__LISTEN"]
        assert config.ops.port == int(env["MONITOR_OPS__PORT"]) == OpsConfig().port
        assert config.database == env["MONITOR_DATABASE_URL"]
    assert len(set(ids)) == 3, f"node ids must be unique: {ids}"
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for copied in ("db/migrations", "monitor", "feeds.yaml", "stories"):
        assert f"COPY {copied}" in dockerfile
        assert (ROOT / copied).exists()


def test_systemd_unit_uses_existing_commands(project: Project) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # keep key case
    unit.read_string((DEPLOY / "story-monitor.service").read_text(encoding="utf-8"))
    service = unit["Service"]
    project.write({"feeds": []})
    for key in ("ExecStartPre", "ExecStart"):
        argv = shlex.split(service[key])
        assert Path(argv[0]).name == "monitor"
        _monitor_args([a for a in argv[1:] if not a.startswith("%") and a != "--node-id"], project)
    assert "--node-id %H" in service["ExecStart"]
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 20  # longer than the daemon's drain timeout
