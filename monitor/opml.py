"""OPML 2.0 (http://opml.org/spec2.opml): export the configured feeds, import a reader's list.

Import appends the new feeds to the config file itself, round-tripped with ruamel.yaml so its
comments, key order and flow style survive; the result is validated as a whole config before it
replaces the file atomically (a failed import changes nothing).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.config import Config, ConfigError, check_http_url, parse_config
from monitor.config import feed_url_key as _url_key


class OpmlError(Exception):
    """The OPML file cannot be read or is not OPML; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    name: str
    url: str


@dataclass(slots=True)
class ImportResult:
    added: list[OpmlFeed] = field(default_factory=list)
    already_configured: list[OpmlFeed] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (what, why)


# --- export ------------------------------------------------------------------------------------


def export_opml(config: Config, title: str = "story-monitor feeds") -> str:
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC), usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(root, "body")
    for feed in config.feeds:
        ET.SubElement(body, "outline", type="rss", text=feed.name, title=feed.name, xmlUrl=feed.url)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --- parse -------------------------------------------------------------------------------------


def parse_opml(data: bytes, source: str = "<opml>") -> tuple[list[OpmlFeed], list[tuple[str, str]]]:
    """Every outline with an ``xmlUrl`` (at any depth: folders are flattened). Returns the feeds
    and the outlines that were skipped, with the reason."""
    if b"<!ENTITY" in data.upper():
        raise OpmlError(f"{source}: entity declarations are not allowed in OPML (entity expansion attacks)")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line, col = exc.position
        raise OpmlError(f"{source}: line {line}, column {col + 1}: not well-formed XML") from None
    if root.tag != "opml":
        raise OpmlError(f"{source}: not an OPML document (root element <{root.tag}>, expected <opml>)")
    body = root.find("body")
    if body is None:
        raise OpmlError(f"{source}: OPML without <body>")
    feeds: list[OpmlFeed] = []
    skipped: list[tuple[str, str]] = []
    for outline in body.iter("outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        label = (outline.get("title") or outline.get("text") or "").strip()
        if not url:
            continue  # a folder
        try:
            url = check_http_url(url)
        except ValueError as exc:
            skipped.append((label or url, str(exc)))
            continue
        name = re.sub(r"\s+", " ", label) or (urlsplit(url).hostname or url)
        feeds.append(OpmlFeed(name[:200], url))
    return feeds, skipped


# --- import ------------------------------------------------------------------------------------


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def plan_import(config: Config, feeds: list[OpmlFeed], skipped: list[tuple[str, str]]) -> ImportResult:
    """Which feeds are new (by URL), with unique names."""
    result = ImportResult(invalid=list(skipped))
    known_urls = {_url_key(f.url) for f in config.feeds}
    names = {f.name for f in config.feeds}
    for feed in feeds:
        if _url_key(feed.url) in known_urls:
            result.already_configured.append(feed)
            continue
        name, n = feed.name, 2
        while name in names:
            name = f"{feed.name} ({n})"
            n += 1
        names.add(name)
        known_urls.add(_url_key(feed.url))
        result.added.append(OpmlFeed(name, feed.url))
    return result


@contextlib.contextmanager
def locked_config(config_path: Path) -> Iterator[None]:
    """One edit of the config file at a time across processes (two `feeds import` at once each read
    the file, added their feeds and replaced it: the first one's feeds were lost, both said
    "added"). An exclusive flock on the file itself; a file replaced while this process waited
    (by the edit that held the lock) is locked anew. No lock where the platform has none."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    real = config_path.resolve()
    while True:
        fd = os.open(real, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(real).st_ino:
                yield
                return
        finally:
            os.close(fd)  # and with it the lock


def import_into_config(config_path: Path, feeds: list[OpmlFeed]) -> str:
    """Append ``feeds`` to the config file's ``feeds:`` list, keeping everything else as written.
    Returns the new text; the file is replaced only when the new config validates."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    original = config_path.read_text(encoding="utf-8")
    yaml = _yaml()
    try:
        data = yaml.load(original)
    except YAMLError as exc:
        # The loader's own error (duplicate key, bad YAML), naming the key path and line, rather
        # than ruamel's traceback; ruamel's message only where the loader finds nothing wrong.
        parse_config(original, source=str(config_path), env={})
        mark = exc.problem_mark if isinstance(exc, MarkedYAMLError) else None
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = (exc.problem if isinstance(exc, MarkedYAMLError) else None) or "invalid YAML"
        raise ConfigError(f"{config_path}: {where}cannot edit the config file: {problem}") from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the top level must be a mapping of keys")
    seq = data.get("feeds")
    if seq is None:
        seq = CommentedSeq()
        data["feeds"] = seq
    if not isinstance(seq, list):
        raise ConfigError(f"{config_path}: feeds: must be a list")
    flow = bool(seq) and all(
        getattr(getattr(e, "fa", None), "flow_style", False) for e in seq if isinstance(e, dict)
    )
    for feed in feeds:
        entry = CommentedMap([("name", feed.name), ("url", feed.url)])
        if flow:
            entry.fa.set_flow_style()
        seq.append(entry)
    out = io.StringIO()
    yaml.dump(data, out)
    text = out.getvalue()
    parse_config(text, source=str(config_path), env={})  # raises ConfigError: nothing is written
    _atomic_write(config_path, text)
    return text


def _umask() -> int:
    """The process's umask (``mkstemp`` creates its file 0600 whatever it is)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, text: str) -> None:
    # A symlinked config (e.g. into a dotfiles or deployment repository): replace the file it points
    # to, next to it; replacing the link itself would cut the config loose from its real file.
    path = path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # keep the file's permissions; a new file gets the usual ones
            os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
