"""OPML 2.0: ``monitor feeds export`` and ``monitor feeds import`` (round trip, safe edits)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.conftest import Project

CONFIG = """\
# Meine Feeds – Kommentare bleiben erhalten.
database: sqlite:///monitor.sqlite3   # neben dieser Datei

fetch:
  interval: 5m   # Standard

feeds:
  # öffentlich-rechtlich
  - {name: tagesschau, url: "https://www.tagesschau.de/xml/rss2/"}
  - {name: dlf, url: "https://www.deutschlandfunk.de/nachrichten-100.rss"}

stories:
  - id: budapest-summit
    title: Gipfel in Budapest
    keywords: [Budapest-Gipfel, Selenski]
"""

OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>Feeds aus dem Reader</title></head>
  <body>
    <outline text="Nachrichten" title="Nachrichten">
      <outline type="rss" text="Tagesschau" xmlUrl="https://WWW.tagesschau.de/xml/rss2" htmlUrl="https://www.tagesschau.de/"/>
      <outline type="rss" text="Süddeutsche Zeitung" title="Süddeutsche Zeitung" xmlUrl="https://rss.sueddeutsche.de/rss/Topthemen"/>
      <outline type="rss" text="dlf" xmlUrl="https://www.deutschlandfunk.de/andere-nachrichten.rss"/>
    </outline>
    <outline text="Österreich">
      <outline type="rss" title="Der Standard" text="derStandard" xmlUrl="https://www.derstandard.at/rss"/>
      <outline type="rss" text="Kaputt" xmlUrl="ftp://example.org/feed"/>
    </outline>
  </body>
</opml>
"""


def test_export_lists_every_configured_feed_as_opml_2(project: Project) -> None:
    project.write(CONFIG)
    result = project.cli("feeds", "export")
    assert result.exit_code == 0, result.stderr
    root = ET.fromstring(result.stdout)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.find("head/title") is not None and root.find("head/dateCreated") is not None
    outlines = root.findall("body/outline")
    assert [(o.get("text"), o.get("xmlUrl"), o.get("type")) for o in outlines] == [
        ("tagesschau", "https://www.tagesschau.de/xml/rss2/", "rss"),
        ("dlf", "https://www.deutschlandfunk.de/nachrichten-100.rss", "rss"),
    ]


def test_import_appends_new_feeds_keeping_comments_and_skips_known_ones(project: Project) -> None:
    project.write(CONFIG)
    opml = project.dir / "reader.opml"
    opml.write_text(OPML, encoding="utf-8")

    result = project.cli("feeds", "import", str(opml), "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert [f["name"] for f in report["added"]] == ["Süddeutsche Zeitung", "dlf (2)", "Der Standard"]
    assert [f["url"] for f in report["already_configured"]] == ["https://WWW.tagesschau.de/xml/rss2"]
    assert len(report["invalid"]) == 1 and "ftp" in report["invalid"][0]["problem"]

    text = project.config_path.read_text(encoding="utf-8")
    # Comments, the original entries and their flow style survive; new entries follow that style.
    assert "# Meine Feeds – Kommentare bleiben erhalten." in text
    assert "# öffentlich-rechtlich" in text
    assert "# neben dieser Datei" in text
    assert '- {name: tagesschau, url: "https://www.tagesschau.de/xml/rss2/"}' in text
    assert "- {name: Süddeutsche Zeitung, url: https://rss.sueddeutsche.de/rss/Topthemen}" in text
    data = yaml.safe_load(text)
    assert [f["name"] for f in data["feeds"]] == [
        "tagesschau",
        "dlf",
        "Süddeutsche Zeitung",
        "dlf (2)",
        "Der Standard",
    ]
    assert data["stories"][0]["id"] == "budapest-summit"

    # The edited config is valid and lists the new feeds; a second import adds nothing.
    listing = project.cli("feeds", "--json")
    assert listing.exit_code == 0, listing.stderr
    assert {f["name"] for f in listing.json()} >= {"Süddeutsche Zeitung", "Der Standard"}
    again = project.cli("feeds", "import", str(opml), "--json").json()
    assert again["added"] == [] and len(again["already_configured"]) == 4
    assert project.config_path.read_text(encoding="utf-8") == text


def test_export_then_import_round_trips(project: Project, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    project.write(CONFIG)
    exported = project.cli("feeds", "export").stdout
    other = Project(tmp_path_factory.mktemp("other"))
    other.write("feeds: []\n")
    (other.dir / "in.opml").write_text(exported, encoding="utf-8")
    result = other.cli("feeds", "import", str(other.dir / "in.opml"))
    assert result.exit_code == 0, result.stderr
    assert "added 2 feeds" in result.stdout
    data = yaml.safe_load(other.config_path.read_text(encoding="utf-8"))
    assert data["feeds"] == [
        {"name": "tagesschau", "url": "https://www.tagesschau.de/xml/rss2/"},
        {"name": "dlf", "url": "https://www.deutschlandfunk.de/nachrichten-100.rss"},
    ]


def test_dry_run_changes_nothing(project: Project) -> None:
    project.write(CONFIG)
    (project.dir / "r.opml").write_text(OPML, encoding="utf-8")
    result = project.cli("feeds", "import", str(project.dir / "r.opml"), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "would add 3 feeds" in result.stdout
    assert project.config_path.read_text(encoding="utf-8") == CONFIG


def test_broken_or_hostile_opml_is_a_clear_error_and_changes_nothing(project: Project) -> None:
    project.write(CONFIG)
    cases = {
        "broken.opml": (
            "<opml version='2.0'><body><outline xmlUrl='https://a.example/'></body>",
            "not well-formed",
        ),
        "notopml.opml": ("<rss version='2.0'><channel/></rss>", "not an OPML document"),
        "bomb.opml": (
            '<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            "<opml version='2.0'><body><outline text='&b;' xmlUrl='https://x.example/'/></body></opml>",
            "entity",
        ),
    }
    for name, (body, message) in cases.items():
        (project.dir / name).write_text(body, encoding="utf-8")
        result = project.cli("feeds", "import", str(project.dir / name))
        assert result.exit_code == 2, (name, result.stdout, result.stderr)
        assert name in result.stderr and message in result.stderr, result.stderr
    missing = project.cli("feeds", "import", str(project.dir / "nope.opml"))
    assert missing.exit_code == 2
    assert project.config_path.read_text(encoding="utf-8") == CONFIG


def test_import_that_would_make_the_config_invalid_writes_nothing(project: Project) -> None:
    # An unknown key elsewhere makes the whole file invalid: loading fails first, with exit 2.
    project.write(CONFIG + "unbekannt: 1\n")
    (project.dir / "r.opml").write_text(OPML, encoding="utf-8")
    result = project.cli("feeds", "import", str(project.dir / "r.opml"))
    assert result.exit_code == 2
    assert "unbekannt" in result.stderr
    assert project.config_path.read_text(encoding="utf-8").endswith("unbekannt: 1\n")


def test_bare_feeds_still_lists_feeds(project: Project) -> None:
    project.write(CONFIG)
    result = project.cli("feeds", "--json")
    assert result.exit_code == 0, result.stderr
    assert [f["name"] for f in result.json()] == ["dlf", "tagesschau"]
    table = project.cli("feeds")
    assert table.exit_code == 0 and "tagesschau" in table.stdout


def test_import_into_a_config_with_duplicate_keys_is_a_clear_error_and_changes_nothing(
    project: Project,
) -> None:
    from monitor.config import ConfigError
    from monitor.opml import OpmlFeed, import_into_config

    text = CONFIG.replace("fetch:\n", "fetch:\n  interval: 10m\nfetch:\n", 1)
    project.write(text)
    (project.dir / "r.opml").write_text(OPML, encoding="utf-8")
    result = project.cli("feeds", "import", str(project.dir / "r.opml"))
    assert result.exit_code == 2
    assert f"{project.config_path}: fetch (line 6): duplicate key (first on line 4)" in result.stderr
    # The editor itself (ruamel.yaml) refuses such a file too: with the loader's message, not its own
    # DuplicateKeyError.
    with pytest.raises(ConfigError, match=r"fetch \(line 6\): duplicate key \(first on line 4\)"):
        import_into_config(project.config_path, [OpmlFeed("neu", "https://neu.example/feed")])
    assert project.config_path.read_text(encoding="utf-8") == text


def test_import_into_a_symlinked_config_writes_through_to_the_real_file(project: Project) -> None:
    real = project.dir / "deploy" / "feeds.yaml"
    real.parent.mkdir()
    real.write_text(CONFIG, encoding="utf-8")
    project.config_path.symlink_to(Path("deploy") / "feeds.yaml")  # a relative link, as usually made
    (project.dir / "r.opml").write_text(OPML, encoding="utf-8")
    result = project.cli("feeds", "import", str(project.dir / "r.opml"))
    assert result.exit_code == 0, result.stderr
    assert project.config_path.is_symlink()  # was: replaced by a regular file, the real one unchanged
    assert project.config_path.readlink() == Path("deploy") / "feeds.yaml"
    assert "Süddeutsche Zeitung" in real.read_text(encoding="utf-8")
    assert [p.name for p in real.parent.iterdir()] == ["feeds.yaml"]  # no temporary file left behind


def test_two_imports_at_once_take_turns_and_keep_both(project: Project) -> None:
    """Two `feeds import` at once each read the file, added their feeds and replaced it: one
    import's feeds were lost while both said "added". An import waits for the one editing the file
    and plans on the file as that one left it."""
    import threading

    from monitor.config import load_config
    from monitor.opml import import_into_config, locked_config, parse_opml, plan_import

    project.write(CONFIG)
    other = OPML.replace("tagesschau.de/xml/rss2", "example.org/anders.xml")
    (project.dir / "r.opml").write_text(OPML, encoding="utf-8")
    outcome: list[int] = []
    importing = threading.Thread(
        target=lambda: outcome.append(project.cli("feeds", "import", str(project.dir / "r.opml")).exit_code)
    )
    with locked_config(project.config_path):  # another import is editing the file
        importing.start()
        importing.join(2.0)
        assert importing.is_alive(), "the import did not wait for the edit in progress"
        found, skipped = parse_opml(other.encode(), "anders.opml")
        import_into_config(
            project.config_path, plan_import(load_config(project.config_path), found, skipped).added
        )
    importing.join(30)
    assert outcome == [0]
    names = [f.name for f in load_config(project.config_path).feeds]
    # the first edit added Tagesschau (another URL), Süddeutsche Zeitung, dlf (2) (another URL) and
    # Der Standard; the waiting import, planned on that file, finds all of its feeds configured
    # (not: each of them a second time, planned on the file as it was before)
    assert sorted(names) == sorted(
        ["tagesschau", "dlf", "Tagesschau", "Süddeutsche Zeitung", "dlf (2)", "Der Standard"]
    ), names
