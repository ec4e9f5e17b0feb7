"""Config errors name the file, the key path (and line) and the problem; the CLI exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config, parse_config, parse_duration
from tests.conftest import ROOT, SHARED, STORY, Project

FEED = {"name": "zeitung", "url": "http://127.0.0.1:9/feed.xml"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("feeds: [\n  {name: a, url: 'http://x/'\n", "line 3, column 1: invalid YAML"),
        (
            "feeds:\n  - name: a\n    url: http://x.example/\n    intervall: 5m\n",
            "feeds[0].intervall (line 4): unknown key",
        ),
        ("fetch:\n  concurrency: viele\n", "fetch.concurrency (line 2): Input should be a valid integer"),
        (
            "feeds:\n  - {name: a, url: 'ftp://x.example/f'}\n",
            "feeds[0].url (line 2): 'ftp://x.example/f' is not an http(s) URL",
        ),
        ("feeds:\n  - {name: a, url: 'http:///f'}\n", "feeds[0].url (line 2): 'http:///f' has no host"),
        (
            "feeds:\n  - {name: a, url: 'http://x.example/', interval: bald}\n",
            "feeds[0].interval (line 2): 'bald' is not a duration",
        ),
        (
            "feeds:\n  - {name: a, url: 'http://x.example/'}\n  - {name: a, url: 'http://y.example/'}\n",
            "feeds[1].name (line 3): duplicate feed name 'a'",
        ),
        (
            "stories:\n  - {id: s, title: S, keywords: [x], baseline: {path: a, text: b}}\n",
            "stories[0].baseline (line 2): a baseline needs exactly one of",
        ),
        (
            "stories:\n  - {id: 'Mit Leerzeichen', title: S, keywords: [x]}\n",
            "stories[0].id (line 2): String should match pattern",
        ),
        ("alerts:\n  webhooks:\n    - {secret_env: X}\n", "alerts.webhooks[0].url (line 3): Field required"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("database: 'kein url'\n", "database (line 1): 'kein url' is not an SQLAlchemy URL"),
    ],
)
def test_config_errors_name_file_path_and_problem(project: Project, text: str, expected: str) -> None:
    project.write(text)
    result = project.cli("feeds")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert str(project.config_path) in result.stderr
    assert expected in result.stderr


@pytest.mark.parametrize(
    ("near", "expected"),
    [
        ("0", "Input should be greater than or equal to 1; or: Input should be 'sentence'"),
        ("absatz", "Input should be a valid integer; or: Input should be 'sentence'"),
    ],
)
def test_a_value_that_fits_no_alternative_is_one_error_without_pydantic_labels(
    project: Project, near: str, expected: str
) -> None:
    """``near`` takes a number of words or 'sentence': one line for the value, naming both, and
    none of pydantic's internal labels of the alternatives (``constrained-int``, ``literal[...]``)."""
    project.write(
        "stories:\n  - id: s\n    title: S\n    rules:\n      terms: {ort: [Budapest]}\n"
        f"      match:\n        - any: [ort]\n          near: {near}\n"
    )
    result = project.cli("feeds")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if "near" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].endswith(f"stories[0].rules.match[0].near (line 8): {expected}"), errors
    assert "constrained" not in result.stderr and "literal[" not in result.stderr


def test_missing_config_file_is_exit_2(tmp_path: Path) -> None:
    project = Project(tmp_path)  # nothing written
    result = project.cli("poll")
    assert result.exit_code == 2
    assert "config file not found" in result.stderr


def test_missing_baseline_file_is_exit_2(project: Project) -> None:
    project.write({"feeds": [FEED], "stories": [{**STORY, "baseline": {"path": "gibt-es-nicht.txt"}}]})
    result = project.cli("poll")
    assert result.exit_code == 2
    assert "baseline.path: file not found" in result.stderr


def test_defaults_env_overrides_and_relative_sqlite_path(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "feeds.yaml"
    path.parent.mkdir()
    path.write_text("feeds:\n  - {name: a, url: 'https://x.example/f'}\n")
    config = load_config(path, env={})
    assert config.database == f"sqlite:///{tmp_path / 'sub' / 'db' / 'monitor.sqlite3'}"
    assert config.feed_interval(config.feeds[0]) == 300.0
    assert config.fetch.allow_private_addresses is False

    env = {"MONITOR_DATABASE_URL": "postgresql+psycopg://u@h/db", "MONITOR_FETCH__CONCURRENCY": "3"}
    config = load_config(path, env=env)
    assert config.database == "postgresql+psycopg://u@h/db"
    assert config.fetch.concurrency == 3

    # A bad value from the environment names the variable, not a line of the file (even where the
    # file sets the same key).
    env_error = (
        r"fetch.concurrency \(from environment MONITOR_FETCH__CONCURRENCY\): Input should be a valid integer"
    )
    with pytest.raises(ConfigError, match=env_error):
        load_config(path, env={"MONITOR_FETCH__CONCURRENCY": "viele"})
    path.write_text("fetch:\n  concurrency: 4\nfeeds: []\n")
    with pytest.raises(ConfigError, match=env_error) as info:
        load_config(path, env={"MONITOR_FETCH__CONCURRENCY": "viele"})
    assert "line" not in str(info.value)
    path.write_text("fetch:\n  concurrency: viele\nfeeds: []\n")  # the file's own error keeps its line
    with pytest.raises(ConfigError, match=r"fetch.concurrency \(line 2\): Input should be a valid integer"):
        load_config(path, env={"MONITOR_FETCH__TIMEOUT": "10s"})


def test_config_path_from_env(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write({"feeds": [FEED]})
    from click.testing import CliRunner

    from monitor.cli import cli

    result = CliRunner().invoke(cli, ["feeds", "--json"], env={"MONITOR_CONFIG": str(project.config_path)})
    assert result.exit_code == 0, result.stderr
    assert '"zeitung"' in result.stdout


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), (90, 90)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_shipped_config_is_valid() -> None:
    config = load_config(ROOT / "feeds.yaml", env={})
    assert len(config.feeds) >= 15
    assert all(f.url.startswith("https://") for f in config.feeds)
    story = config.story("budapest-summit")
    assert story.baseline is not None and story.baseline.path
    assert config.resolve_path(story.baseline.path).is_file()


BASELINE = SHARED / "baseline" / "budapest-summit-2025-10-17.txt"


@pytest.mark.skipif(not BASELINE.is_file(), reason=f"the shared baseline article is not at {BASELINE}")
def test_shared_baseline_article_by_path(project: Project) -> None:
    from monitor.baseline import load_baseline_text

    project.write({"feeds": [FEED], "stories": [{**STORY, "baseline": {"path": str(BASELINE)}}]})
    config = load_config(project.config_path, env={})
    text = load_baseline_text(config, config.stories[0])
    assert text is not None and "Budapest" in text and "Rubio" in text
    # And the CLI starts with it (reads the baseline, creates the database).
    assert project.cli("items", "--json").exit_code == 0


def test_parse_config_accepts_alerts_shape() -> None:
    config = parse_config(
        "alerts:\n  email: {host: smtp.example, from: monitor@example.org, to: [a@example.org]}\n"
        "  webhooks:\n    - {url: 'https://hooks.example/x'}\n",
        env={},
    )
    assert config.alerts.email is not None and config.alerts.email.to == ["a@example.org"]
    assert config.alerts.webhooks[0].url == "https://hooks.example/x"


def test_a_bad_database_url_is_reported_without_its_password(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("database: 'postgresql+psycopg//monitor:Geheim-4711@db.example/monitor'\n")
    with pytest.raises(ConfigError, match="is not an SQLAlchemy URL") as info:
        load_config(path, env={})
    assert "Geheim-4711" not in str(info.value) and "monitor:***@db.example" in str(info.value)
    with pytest.raises(ConfigError) as info:  # the same value from the environment
        load_config(path, env={"MONITOR_DATABASE_URL": "postgres:/u:Geheim-4711@h/db"})
    assert "Geheim-4711" not in str(info.value)


def test_duplicate_keys_are_errors_naming_path_and_both_lines(project: Project) -> None:
    # YAML loaders keep the last of two equal keys: the first `fetch:` or `url:` vanished unseen.
    project.write(
        "fetch:\n  concurrency: 4\nfetch:\n  timeout: 5s\n"
        "feeds:\n  - name: a\n    url: http://127.0.0.1:9/a\n    url: http://127.0.0.1:9/b\n"
    )
    result = project.cli("feeds")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{project.config_path}: fetch (line 3): duplicate key (first on line 1)" in result.stderr
    assert f"{project.config_path}: feeds[0].url (line 8): duplicate key (first on line 7)" in result.stderr


def test_the_same_feed_twice_is_an_error() -> None:
    """Two names for one feed would store and count every item twice."""
    with pytest.raises(ConfigError, match=r"feeds\[1\]\.url \(line 3\): the same feed as 'a'"):
        parse_config(
            "feeds:\n  - {name: a, url: 'https://zeitung.example/rss'}\n"
            "  - {name: b, url: 'https://Zeitung.example:443/rss/'}\n",
            source="t.yaml",
        )


def test_merge_keys_may_be_overridden_and_aliases_are_not_duplicates() -> None:
    text = (
        "feeds:\n  - &feed {name: a, url: 'http://127.0.0.1:9/a', interval: 10m}\n"
        "  - {<<: *feed, name: b, url: 'http://127.0.0.1:9/b', interval: 20m}\n"
        "  - {<<: *feed, name: c, url: 'http://127.0.0.1:9/c'}\n"
    )
    config = parse_config(text, env={})
    assert [(f.name, f.url, f.interval) for f in config.feeds] == [
        ("a", "http://127.0.0.1:9/a", 600),
        ("b", "http://127.0.0.1:9/b", 1200),
        ("c", "http://127.0.0.1:9/c", 600),
    ]
    with pytest.raises(ConfigError, match=r"feeds\[1\].name \(line 3\): duplicate key \(first on line 3\)"):
        parse_config(text.replace("name: b,", "name: b, name: d,"), env={})


def test_poll_intervals_below_one_second_are_errors_naming_the_key_and_the_minimum() -> None:
    # `5ms` for `5m` polled one feed 284 times in 8 s.
    feed = "feeds:\n  - {name: a, url: 'http://127.0.0.1:9/a', interval: %s}\n"
    with pytest.raises(
        ConfigError, match=r"feeds\[0\].interval \(line 2\): '5ms' is below the minimum poll interval of 1s"
    ):
        parse_config(feed % "5ms", env={})
    with pytest.raises(
        ConfigError, match=r"fetch.interval \(line 1\): 0.5 is below the minimum poll interval of 1s"
    ):
        parse_config("fetch: {interval: 0.5}\n", env={})
    with pytest.raises(
        ConfigError, match=r"fetch.interval \(from environment MONITOR_FETCH__INTERVAL\): '999ms'"
    ):
        parse_config("", env={"MONITOR_FETCH__INTERVAL": "999ms"})
    # One second is allowed (tests and the bench poll that fast); other durations keep sub-second values.
    config = parse_config(
        feed % "1s" + "fetch: {interval: 1000ms, timeout: 0.5s, alert_after: 1ms, max_backoff: 0.2s}\n"
        "alerts: {deliver_every: 0.2s, retry: {backoff: 0.05s}}\n",
        env={},
    )
    assert config.feeds[0].interval == 1.0 and config.fetch.interval == 1.0
    assert (config.fetch.timeout, config.fetch.max_backoff, config.alerts.retry.backoff) == (0.5, 0.2, 0.05)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # In memory: every command (and every connection of the daemon) saw an empty database.
        ("sqlite://", "'sqlite://' is an in-memory SQLite database"),
        ("sqlite:///", "'sqlite:///' is an in-memory SQLite database"),
        ("sqlite:///:memory:", "'sqlite:///:memory:' is an in-memory SQLite database"),
        ("sqlite:///file::memory:?cache=shared&uri=true", "is an in-memory SQLite database"),
        ("sqlite://db.example/x.sqlite3", "a SQLite URL has no host"),
        # No driver for these: a ModuleNotFoundError traceback on the first command.
        (
            "mysql://monitor:Geheim-4711@db.example/monitor",
            "'mysql://monitor:***@db.example/monitor': 'mysql' is not supported",
        ),
        ("postgresql+psycopg2://db.example/monitor", "'postgresql+psycopg2' is not supported"),
    ],
)
def test_unsupported_database_urls_are_config_errors(project: Project, url: str, expected: str) -> None:
    project.write(f"database: '{url}'\nfeeds: []\n")
    result = project.cli("feeds")
    assert result.exit_code == 2
    assert f"{project.config_path}: database (line 1): '" in result.stderr
    assert expected in result.stderr
    assert "Geheim-4711" not in result.stderr


def test_a_sqlite_path_may_start_with_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    path = work / "feeds.yaml"
    path.write_text("database: sqlite:///~/monitor/m.sqlite3\nfeeds: []\n")
    config = load_config(path, env={})
    assert config.database == f"sqlite:///{home}/monitor/m.sqlite3"
    # And where a URL reaches the store directly (the alembic command line reads
    # $MONITOR_DATABASE_URL itself): the same file, not a folder named '~'.
    from monitor.store import make_engine

    engine = make_engine("sqlite:///~/direct.sqlite3")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    finally:
        engine.dispose()
    assert (home / "direct.sqlite3").is_file()
    assert not (work / "~").exists() and not (tmp_path / "~").exists()
    # PostgreSQL in all its spellings, and relative SQLite paths, are still fine.
    for url in ("postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        assert load_config(path, env={"MONITOR_DATABASE_URL": url}).database == url
    relative = load_config(path, env={"MONITOR_DATABASE_URL": "sqlite+pysqlite:///db/m.sqlite3?timeout=5"})
    assert relative.database == f"sqlite+pysqlite:///{work}/db/m.sqlite3?timeout=5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Each was coerced before: true to 1, 4.0 to 4, '9464' to 9464, yes to 1.0, 1 to true.
        ("fetch: {concurrency: true}\n", "fetch.concurrency (line 1): Input should be a valid integer"),
        ("fetch: {concurrency: 4.0}\n", "fetch.concurrency (line 1): Input should be a valid integer"),
        ("ops: {port: '9464'}\n", "ops.port (line 1): Input should be a valid integer"),
        ("alerts: {retry: {jitter: yes}}\n", "alerts.retry.jitter (line 1): Input should be a valid number"),
        ("fetch: {http2: 1}\n", "fetch.http2 (line 1): Input should be a valid boolean"),
    ],
)
def test_values_are_not_coerced_between_types(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    assert expected in str(info.value)


def test_numbers_still_read_as_numbers_from_the_file_and_the_environment() -> None:
    config = parse_config(
        "fetch: {concurrency: 8}\nalerts: {retry: {jitter: 0}}\nops: {port: 0}\n",
        env={"MONITOR_FETCH__PER_HOST": "3", "MONITOR_FETCH__HTTP2": "true", "MONITOR_ALERTS__BATCH": "7"},
    )
    assert (config.fetch.concurrency, config.fetch.per_host, config.fetch.http2) == (8, 3, True)
    assert (config.alerts.retry.jitter, config.alerts.batch, config.ops.port) == (0.0, 7, 0)


def test_no_key_of_the_config_is_taken_for_a_pydantic_label() -> None:
    """Error paths drop pydantic's labels of union members (``_is_union_tag``); a key of the config
    written like one would vanish from the path of its errors."""
    import monitor.config as config_module

    models = [
        m
        for m in vars(config_module).values()
        if isinstance(m, type) and issubclass(m, config_module.BaseModel) and m.__module__ == "monitor.config"
    ]
    keys = {key for model in models for key in model.model_fields}
    assert len(models) > 10 and {"url", "near", "none", "interval"} <= keys
    assert [key for key in sorted(keys) if config_module._is_union_tag(key)] == []
