"""The README is a contract for tools outside the project: every CLI command and option, and every
configuration key, that exists in the code is documented there (so neither can drift silently), and
its configuration examples are valid as written."""

from __future__ import annotations

import re
import textwrap
import typing
from pathlib import Path

import click
from pydantic import BaseModel

from monitor.cli import cli
from monitor.config import Config, parse_config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _section(name: str) -> str:
    match = re.search(rf"<!-- SECTION: {name} -->(.*?)<!-- /SECTION: {name} -->", README, re.S)
    assert match, f"README has no {name} section"
    return match.group(1)


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}".strip()
        out.append((path, command))
        if isinstance(command, click.Group):
            out += _commands(command, path)
    return out


def _long_options(command: click.Command) -> list[str]:
    names = []
    for param in command.params:
        if isinstance(param, click.Option):
            longs = [o for o in param.opts if o.startswith("--")]
            if longs and longs[0] != "--help":
                names.append(longs[0])
    return names


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    section = _section("cli")
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    missing = []
    for option in _long_options(cli):
        if option not in section:
            missing.append(f"monitor {option}")
    for path, command in _commands(cli):
        # The rows that document this command: "`alerts list ..." anywhere in a table row.
        documented = [row for row in rows if re.search(rf"`{re.escape(path)}(\s|`)", row)]
        if not documented:
            missing.append(f"monitor {path}")
            continue
        for option in _long_options(command):
            if not any(option in row for row in documented):
                missing.append(f"monitor {path} {option}")
    assert not missing, f"not in README's CLI reference: {missing}"


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _config_keys(model: type[BaseModel], path: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = field.alias or name
        full = f"{path}.{key}" if path else key
        keys.append(full)
        for sub in _models(field.annotation):
            keys += _config_keys(sub, full)
    return keys


def test_every_config_key_is_documented() -> None:
    keys = _config_keys(Config)
    assert "alerts.retry.lease" in keys and "fetch.max_bytes" in keys  # the walk reaches nested keys
    missing = [
        key
        for key in keys
        # `key` in a table or text, `section.key` / `[].key`, or `key:` in a YAML example.
        if not re.search(rf"[`.\s{{]{re.escape(key.rsplit('.', 1)[-1])}(`|:)", README)
    ]
    assert not missing, f"config keys missing from README: {missing}"


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)


def test_the_rules_example_is_a_valid_story() -> None:
    """Pasted under a story as written, the "Rules" example validates with the real loader."""
    (block,) = [b for b in _yaml_blocks(_section("matching")) if b.startswith("rules:")]
    text = "stories:\n  - id: readme\n    title: README example\n" + textwrap.indent(block, "    ")
    rules = parse_config(text, source="README.md", env={}).stories[0].rules
    assert rules is not None and len(rules.match) == 2 and rules.exclude  # the whole block was read


def test_the_other_yaml_examples_are_valid_configs() -> None:
    blocks = [b for b in _yaml_blocks(README) if not b.startswith("rules:")]
    assert any(b.startswith("alerts:") for b in blocks)
    for block in blocks:
        parse_config(block, source="README.md", env={})
