"""The configuration file (``feeds.yaml``): schema, defaults, environment overrides, precise errors.

The top-level keys (``database``, ``fetch``, ``feeds``, ``stories``, ``alerts``) are a documented
contract that tools outside the project rely on; see README "Configuration reference".
Every error names the file, the key path and, where the YAML gives one, the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG_PATH = "feeds.yaml"
DEFAULT_DATABASE_URL = "sqlite:///db/monitor.sqlite3"
ENV_PREFIX = "MONITOR_"


class ConfigError(Exception):
    """A configuration problem; the message names the file, key path and problem."""


# --- value types -----------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any, *, allow_zero: bool = False) -> float:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` or a number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like '30s', '5m', '1h' or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        pos, seconds = 0, 0.0
        for m in _DURATION_RE.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if not text or pos != len(text):
            raise ValueError(f"{value!r} is not a duration like '30s', '5m', '1h' or '1h30m'")
    else:
        raise ValueError("a duration must be like '30s', '5m', '1h' or a number of seconds")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
DurationOrZero = Annotated[float, BeforeValidator(lambda v: parse_duration(v, allow_zero=True))]

# A feed is polled once per interval: '5ms' (a typo for '5m') polled one feed 284 times in 8 s.
# Timeouts, retry backoff and the like keep sub-second values (tests use '0.05s').
MIN_POLL_INTERVAL = 1.0


def parse_poll_interval(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds < MIN_POLL_INTERVAL:
        raise ValueError(f"{value!r} is below the minimum poll interval of {MIN_POLL_INTERVAL:g}s")
    return seconds


PollInterval = Annotated[float, BeforeValidator(parse_poll_interval)]


def check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host; anything else is a config error."""
    if not isinstance(value, str):
        raise ValueError("must be a URL string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r} is not an http(s) URL (scheme {parts.scheme or 'missing'!r})")
    if not parts.hostname:
        raise ValueError(f"{value!r} has no host")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"{value!r} has an invalid port") from exc
    return value.strip()


HttpUrl = Annotated[str, BeforeValidator(check_http_url)]


def feed_url_key(url: str) -> str:
    """Same feed: scheme and host case-insensitive, default ports and a trailing slash ignored."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not ((parts.scheme == "http" and port == 80) or (parts.scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(("", host, path, parts.query, ""))


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored. Values are not coerced
    (``strict``): ``true`` is not the number 1, ``4.5`` not the count 4, ``"8"`` not 8."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- sections --------------------------------------------------------------------------------


class FetchConfig(StrictModel):
    concurrency: int = Field(32, ge=1, le=1000, description="feeds fetched at the same time")
    per_host: int = Field(4, ge=1, le=100, description="requests at the same time to one host")
    timeout: Duration = Field(20.0, description="total time for one request")
    connect_timeout: Duration = Field(10.0, description="time to connect")
    read_timeout: Duration = Field(
        15.0, description="longest silence while waiting for response bytes (total: timeout)"
    )
    user_agent: str = Field(
        "story-monitor/0.1 (+https://github.com/story-monitor/story-monitor)",
        min_length=1,
    )
    contact_url: HttpUrl | None = Field(None, description="appended to the User-Agent")
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="response size cap (decoded)")
    max_redirects: int = Field(5, ge=0, le=30)
    http2: bool = Field(
        False,
        description="negotiate HTTP/2 where a server offers it (httpx's own wire; ~2x the CPU per request)",
    )
    allow_private_addresses: bool = Field(
        False, description="let article links (full text) reach private/loopback addresses"
    )
    interval: PollInterval = Field(300.0, description="default poll interval of a feed (at least 1s)")
    jitter: DurationOrZero = Field(10.0, description="random delay added to each scheduled poll")
    alert_after: Duration = Field(6 * 3600.0, description="raise 'source down' after failing this long")
    max_backoff: Duration = Field(6 * 3600.0, description="longest wait between polls of a failing feed")


class FeedConfig(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    url: HttpUrl
    interval: PollInterval | None = None
    fulltext: bool = False

    @field_validator("name")
    @classmethod
    def _name_is_one_line(cls, v: str) -> str:
        if v != v.strip() or "\n" in v:
            raise ValueError("a feed name must be one line without surrounding spaces")
        return v


class BaselineConfig(StrictModel):
    path: str | None = None
    url: HttpUrl | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BaselineConfig:
        given = [k for k in ("path", "url", "text") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a baseline needs exactly one of 'path', 'url' or 'text'")
        return self


_GROUP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _check_term(term: str) -> str:
    """A story term: a word or phrase; ``*x`` also matches compounds ending in x (Klimagipfel),
    ``=x`` only the exact word, ``!x`` excludes a word from its group (``!Alpengipfel``)."""
    if not isinstance(term, str):
        raise ValueError("a term must be a string")
    core = term.strip().lstrip("!=*").strip()
    if not core:
        raise ValueError(f"empty term {term!r}")
    if "*" in core or "=" in core:
        raise ValueError(f"term {term!r}: '*' and '=' may only start a term")
    if term.strip().startswith("*") and (" " in core or len(core) < 3):
        raise ValueError(f"term {term!r}: a '*' compound term must be one word of 3+ letters")
    return term.strip()


Term = Annotated[str, BeforeValidator(_check_term)]


class RuleClause(StrictModel):
    """One scoring clause: every ``all`` group, at least one ``any`` group and no ``none`` group,
    within ``near`` (N words, or ``sentence``; default the whole item). Adds ``weight`` times the
    field weight (title or body) to the item's score."""

    name: str | None = None
    all: list[str] = Field(default_factory=list)
    any: list[str] = Field(default_factory=list)
    none: list[str] = Field(default_factory=list)
    near: Annotated[int, Field(ge=1, le=1000)] | Literal["sentence"] | None = None
    weight: float = Field(1.0, gt=0, le=1000)

    @model_validator(mode="after")
    def _has_terms(self) -> RuleClause:
        if not self.all and not self.any:
            raise ValueError("a rule needs 'all' or 'any' term groups")
        return self


class FieldWeights(StrictModel):
    title: float = Field(2.0, ge=0, le=100)
    body: float = Field(1.0, ge=0, le=100)


class SimilarityConfig(StrictModel):
    """Story-aware relevance: lemma similarity to the baseline and to items already in the story."""

    requires: list[str] = Field(default_factory=list, description="groups an item must mention first")
    baseline: float = Field(0.0, ge=0, le=1, description="cosine to the baseline that adds 'weight'")
    story: float = Field(0.0, ge=0, le=1, description="cosine to a story item that adds 'weight'")
    weight: float = Field(1.0, ge=0, le=1000)
    anchor: float = Field(0.35, ge=0, le=1, description="cosine to the baseline that dates the story's start")


class StoryRules(StrictModel):
    terms: dict[str, list[Term]] = Field(min_length=1)
    match: list[RuleClause] = Field(min_length=1)
    exclude: list[RuleClause] = Field(default_factory=list)
    threshold: float = Field(1.0, gt=0, le=10000)
    fields: FieldWeights = Field(default_factory=FieldWeights)
    similarity: SimilarityConfig | None = None
    background: Duration | None = Field(
        None, description="items published this long before the story's start are background"
    )

    @model_validator(mode="after")
    def _references(self) -> StoryRules:
        for name, terms in self.terms.items():
            if not _GROUP_NAME.match(name):
                raise ValueError(f"terms.{name}: a group name is lower-case letters, digits, '-', '_'")
            if not any(not t.startswith("!") for t in terms):
                raise ValueError(f"terms.{name}: the group has no terms")
        known = ", ".join(sorted(self.terms))
        for section in ("match", "exclude"):
            for i, clause in enumerate(getattr(self, section)):
                for key in ("all", "any", "none"):
                    for group in getattr(clause, key):
                        if group not in self.terms:
                            raise ValueError(
                                f"{section}[{i}].{key}: unknown term group {group!r} (known: {known})"
                            )
        if self.similarity is not None:
            for group in self.similarity.requires:
                if group not in self.terms:
                    raise ValueError(f"similarity.requires: unknown term group {group!r} (known: {known})")
        return self


class StoryConfig(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    title: str = Field(min_length=1)
    baseline: BaselineConfig | None = None
    # A plain list: an item matches when it mentions any of them (German-aware, see README
    # "Matching"). With ``rules`` as well, the list is the term group ``keywords``.
    keywords: list[Term] = Field(default_factory=list)
    rules: StoryRules | None = None
    # Diff stage: an item is a development when its novelty score reaches this (README
    # "Developments"); higher = fewer, surer alerts. None = the built-in default.
    novelty_threshold: float | None = Field(None, gt=0, le=10)

    @model_validator(mode="after")
    def _has_terms(self) -> StoryConfig:
        if not self.keywords and not self.rules:
            raise ValueError("a story needs 'keywords' or 'rules'")
        return self


class RetryConfig(StrictModel):
    """How the outbox worker retries a failed delivery (exponential backoff with jitter)."""

    max_attempts: int = Field(12, ge=1, le=1000, description="attempts before a delivery is dead")
    max_age: Duration = Field(2 * 86400.0, description="a delivery older than this is dead")
    backoff: Duration = Field(30.0, description="wait before the first retry; doubles each attempt")
    max_backoff: Duration = Field(3600.0, description="longest wait between two attempts")
    jitter: float = Field(0.2, ge=0.0, le=1.0, description="random +-share added to each wait")
    # A claimed delivery whose worker died is taken up again after this long. The worker renews
    # a row's lease just before its send and keeps the send's timeout below it, so it only has to
    # outlast one send, not a whole batch (see Outbox.renew).
    lease: Duration = Field(120.0, description="how long a claimed delivery stays claimed")


_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SUBJECT_FIELDS = {"story", "story_title", "title", "kind", "count", "feed"}


def _check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (secrets are given by name)")
    return value


def _check_header_text(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must not contain line breaks")
    return value


EnvName = Annotated[str, BeforeValidator(_check_env_name)]
HeaderText = Annotated[str, BeforeValidator(_check_header_text)]


class ChannelOptions(StrictModel):
    """Options every alert channel has: delivery mode and filters."""

    mode: Literal["instant", "digest"] = "instant"
    digest_every: Duration = Field(3600.0, description="digest period (mode: digest)")
    min_score: float | None = Field(None, description="only developments with at least this score")
    stories: list[str] = Field(default_factory=list, description="only these stories (default: all)")
    retry: RetryConfig | None = None  # per-channel override of alerts.retry


class EmailConfig(ChannelOptions):
    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    sender: HeaderText = Field(alias="from", min_length=3)
    to: list[HeaderText] = Field(min_length=1)
    subject: HeaderText = "[{story}] {title}"
    timeout: Duration = 30.0
    ca_file: str | None = Field(None, description="CA bundle to verify the server (default: system)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("subject")
    @classmethod
    def _subject_fields(cls, v: str) -> str:
        import string

        try:
            names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as exc:
            raise ValueError(f"invalid subject template: {exc}") from None
        unknown = names - _SUBJECT_FIELDS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_SUBJECT_FIELDS))}"
            )
        return v


class WebhookConfig(ChannelOptions):
    url: HttpUrl
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    secret_env: EnvName | None = None
    headers: dict[HeaderText, HeaderText] = Field(default_factory=dict)
    headers_env: dict[HeaderText, EnvName] = Field(
        default_factory=dict, description="headers whose values come from environment variables"
    )
    format: Literal["json", "slack", "teams"] = "json"
    timeout: Duration = 15.0


def _apprise_from_string(value: Any) -> Any:
    return {"url": value} if isinstance(value, str) else value


class AppriseConfig(ChannelOptions):
    url: str | None = Field(None, description="an Apprise URL (tokens in it are secrets: prefer url_env)")
    url_env: EnvName | None = None
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

    @model_validator(mode="after")
    def _one_url(self) -> AppriseConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("an apprise channel needs exactly one of 'url' or 'url_env'")
        return self


class AlertsConfig(StrictModel):
    email: EmailConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    apprise: list[Annotated[AppriseConfig, BeforeValidator(_apprise_from_string)]] = Field(
        default_factory=list
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)
    deliver_every: Duration = Field(5.0, description="how often the daemon's delivery worker runs")
    batch: int = Field(100, ge=1, le=10000, description="deliveries claimed per worker run")

    def channels(self) -> dict[str, EmailConfig | WebhookConfig | AppriseConfig]:
        """The configured channels by their stable name. The name is part of every delivery's
        idempotency key, so it must not depend on list order: ``email``, ``webhook:<name>`` /
        ``apprise:<name>``, or, without a name, 8 hex digits of a hash of the URL."""
        import hashlib

        def digest(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()[:8]

        out: dict[str, EmailConfig | WebhookConfig | AppriseConfig] = {}
        if self.email is not None:
            out["email"] = self.email
        for hook in self.webhooks:
            out[f"webhook:{hook.name or digest(hook.url)}"] = hook
        for app in self.apprise:
            out[f"apprise:{app.name or digest(app.url or 'env:' + (app.url_env or ''))}"] = app
        return out

    @model_validator(mode="after")
    def _unique_channels(self) -> AlertsConfig:
        count = 1 if self.email is not None else 0
        if len(self.channels()) != count + len(self.webhooks) + len(self.apprise):
            raise ValueError("two alert channels have the same name (or URL): give them distinct 'name's")
        return self


class WebConfig(StrictModel):
    """``monitor serve``: the read-only dashboard, JSON API and Atom feeds (see README "Web")."""

    host: str = Field("127.0.0.1", min_length=1, description="address to bind; loopback by default")
    port: int = Field(8080, ge=0, le=65535)
    token_env: str | None = Field(
        None, description="name of the env var holding a bearer token required for every request"
    )
    base_url: HttpUrl | None = Field(None, description="public URL of the dashboard, for links in exports")


class OpsConfig(StrictModel):
    """The operations endpoint of ``monitor run``: /healthz, /readyz, /metrics (Prometheus)."""

    enabled: bool = True
    listen: str = Field("127.0.0.1", min_length=1, description="address to bind (127.0.0.1: local only)")
    port: int = Field(9464, ge=0, le=65535, description="0 picks a free port (logged)")


class Config(StrictModel):
    database: str = DEFAULT_DATABASE_URL
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    feeds: list[FeedConfig] = Field(default_factory=list)
    stories: list[StoryConfig] = Field(default_factory=list)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    # Not part of the file: where it was read from (relative paths resolve against its folder).
    source: str = Field("<defaults>", exclude=True)
    _feeds_by_name: dict[str, FeedConfig] | None = PrivateAttr(default=None)

    @field_validator("database")
    @classmethod
    def _database_url(cls, v: str) -> str:
        return check_database_url(v)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        urls: dict[str, str] = {}
        for i, feed in enumerate(self.feeds):
            if feed.name in seen:
                raise ValueError(f"feeds[{i}].name: duplicate feed name {feed.name!r}")
            seen.add(feed.name)
            # The same feed twice would store and count every item twice (as two sources).
            first = urls.setdefault(feed_url_key(feed.url), feed.name)
            if first != feed.name:
                raise ValueError(f"feeds[{i}].url: the same feed as {first!r} ({feed.url})")
        ids: set[str] = set()
        for i, story in enumerate(self.stories):
            if story.id in ids:
                raise ValueError(f"stories[{i}].id: duplicate story id {story.id!r}")
            ids.add(story.id)
        for name, channel in self.alerts.channels().items():
            unknown = [s for s in channel.stories if s not in ids]
            if unknown:
                raise ValueError(f"alerts: channel {name}: unknown stories {', '.join(unknown)}")
        return self

    @property
    def base_dir(self) -> Path:
        return Path(self.source).resolve().parent if self.source != "<defaults>" else Path.cwd()

    def feed_interval(self, feed: FeedConfig) -> float:
        return feed.interval if feed.interval is not None else self.fetch.interval

    def feed(self, name: str) -> FeedConfig:
        # A dict built on first use: called per feed per poll, a scan was quadratic in the feeds.
        index = self._feeds_by_name
        if index is None or len(index) != len(self.feeds):
            index = {}
            for feed in self.feeds:
                index.setdefault(feed.name, feed)
            self._feeds_by_name = index
        return index[name]

    def story(self, story_id: str) -> StoryConfig:
        for story in self.stories:
            if story.id == story_id:
                return story
        raise KeyError(story_id)

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


# --- loading ---------------------------------------------------------------------------------


def config_path_from(cli_value: str | None, env: Mapping[str, str] | None = None) -> str:
    """``--config``, else ``$MONITOR_CONFIG``, else ``./feeds.yaml``."""
    env = os.environ if env is None else env
    return cli_value or env.get("MONITOR_CONFIG") or DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    path = Path(path)
    try:
        raw_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse_config(raw_text, source=str(path), env=env)


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_config(text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    try:
        # One parse (nodes for error lines, then the data from them), with libyaml when present:
        # reading a config of 2,000 feeds was a tenth of a poll in which nothing changed.
        loader = _SAFE_LOADER(text)
        try:
            node = loader.get_single_node()
            # Before constructing: that flattens merge keys (``<<``) into the mapping nodes.
            duplicates = _duplicate_keys(node) if node is not None else []
            data = loader.construct_document(node) if node is not None and not duplicates else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{source}: {where}invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if duplicates:
        raise ConfigError("\n".join(f"{source}: {d}" for d in duplicates))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (database, fetch, feeds, ...)")
    data = apply_env_overrides(data, env, source)
    data["source"] = source
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, node, _env_override_paths(env))) from None
    return _resolve_database_url(config)


_MERGE_TAG = "tag:yaml.org,2002:merge"
_KeyLink = tuple[Any, "_KeyLink"] | None


def _duplicate_keys(root: yaml.Node) -> list[str]:
    """Every key written twice in one mapping, as ``path (line N): duplicate key (first on line M)``.
    YAML loaders keep the last value and drop the first without a word: two ``fetch:`` sections, or a
    feed with two ``url:`` keys, would silently lose half of what was written. Merge keys (``<<``)
    may be overridden, as YAML means them to be."""
    found: list[tuple[int, str]] = []
    seen: set[int] = set()  # aliases share nodes: each is walked once (and an alias loop ends)
    # Collections only, each with its key path as a linked list, (key, parent's link): a whole path
    # per node was most of the walk's time, and a path is only needed for a duplicate.
    stack: list[tuple[yaml.Node, _KeyLink]] = [(root, None)]
    collections = (yaml.MappingNode, yaml.SequenceNode)
    while stack:
        node, where = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(
                (item, (i, where)) for i, item in enumerate(node.value) if isinstance(item, collections)
            )
            continue
        pairs = node.value
        keys = {(k.tag, k.value) for k, _ in pairs if isinstance(k, yaml.ScalarNode) and k.tag != _MERGE_TAG}
        if len(keys) != len(pairs):  # a duplicate (or a merge key, or a complex key): look closer
            first: dict[tuple[str, str], int] = {}
            for key_node, _ in pairs:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                    continue
                key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
                if key in first:
                    path = format_loc(_unlink((key_node.value, where)))
                    found.append((line, f"{path} (line {line}): duplicate key (first on line {first[key]})"))
                first.setdefault(key, line)
        for key_node, value_node in pairs:
            if isinstance(value_node, collections):
                merged = not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG
                stack.append((value_node, where if merged else (key_node.value, where)))
    return [message for _, message in sorted(found)]


def _unlink(link: _KeyLink) -> tuple[Any, ...]:
    parts = []
    while link is not None:
        part, link = link
        parts.append(part)
    return tuple(reversed(parts))


def _env_override_paths(env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Key paths set from the environment (see ``apply_env_overrides``) -> the variable's name, so an
    error in such a value names the variable, not a line of the file."""
    paths = {("database",): "MONITOR_DATABASE_URL"} if env.get("MONITOR_DATABASE_URL") else {}
    for key in env:
        if key.startswith(ENV_PREFIX) and "__" in key:
            path = tuple(p.lower() for p in key[len(ENV_PREFIX) :].split("__"))
            if len(path) >= 2 and all(path):
                paths[path] = key
    return paths


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str], source: str) -> dict[str, Any]:
    """``MONITOR_DATABASE_URL`` sets ``database``; ``MONITOR_<SECTION>__<KEY>`` sets a nested scalar,
    e.g. ``MONITOR_FETCH__CONCURRENCY=8``. Values are read as YAML scalars."""
    data = dict(data)
    if env.get("MONITOR_DATABASE_URL"):
        data["database"] = env["MONITOR_DATABASE_URL"]
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        if len(path) < 2 or not all(path):
            continue
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        target = data
        for part in path[:-1]:
            existing = target.get(part)
            if existing is None:
                existing = {}
            if not isinstance(existing, dict):
                raise ConfigError(f"{source}: environment {key}: '{part}' is not a section")
            existing = dict(existing)
            target[part] = existing
            target = existing
        target[path[-1]] = parsed
    return data


_SQLITE_SCHEMES = ("sqlite", "sqlite+pysqlite")
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")  # psycopg 3, the driver we ship


def check_database_url(url: str) -> str:
    """A SQLite file or PostgreSQL: the stores we support. An in-memory SQLite database would be
    empty for every command (and the daemon's own connections: 'no such table'), any other database
    fails later with a missing driver."""
    shown = re.sub(r":[^/@:]*@", ":***@", url)  # never print a password
    m = re.match(r"^([a-z][a-z0-9+]*)://", url)
    if not m:
        raise ValueError(f"{shown!r} is not an SQLAlchemy URL")
    scheme, rest = m.group(1), url[m.end() :]
    if scheme in _POSTGRES_SCHEMES:
        return url
    if scheme not in _SQLITE_SCHEMES:
        raise ValueError(
            f"{shown!r}: {scheme!r} is not supported; use a SQLite file (sqlite:///path/to/monitor.sqlite3) "
            "or PostgreSQL (postgresql://user:pass@host/db)"
        )
    if rest and not rest.startswith("/"):
        raise ValueError(
            f"{shown!r}: a SQLite URL has no host: sqlite:///relative/path or sqlite:////absolute/path"
        )
    path, _, query = rest[1:].partition("?")
    memory = path in ("", ":memory:") or (
        path.startswith("file:") and (path.startswith("file::memory:") or "mode=memory" in query)
    )
    if memory:
        raise ValueError(
            f"{shown!r} is an in-memory SQLite database (nothing would be kept); "
            "name a file: sqlite:///path/to/monitor.sqlite3"
        )
    return url


def _resolve_database_url(config: Config) -> Config:
    """A relative SQLite path is relative to the config file's folder; ``~`` is the home folder
    (SQLite would otherwise create a folder named ``~``)."""
    url = config.database
    scheme, _, rest = url.partition(":///")
    if scheme not in _SQLITE_SCHEMES or rest.startswith("file:"):
        return config
    path, sep, query = rest.partition("?")
    if path.startswith("/"):
        return config
    try:
        resolved = Path(path).expanduser()
    except RuntimeError:  # no such user, or no home folder
        resolved = Path(path)
    if path.startswith("~") and not resolved.is_absolute():
        raise ConfigError(f"{config.source}: database: cannot expand {path.split('/')[0]!r} (no such user?)")
    if not resolved.is_absolute():
        resolved = (config.base_dir / path).resolve()
    return config.model_copy(update={"database": f"{scheme}:///{resolved}{sep}{query}"})


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML tree along a key path to find the line a value stands on."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def format_validation_error(
    exc: ValidationError,
    source: str,
    node: yaml.Node | None,
    env_paths: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    # One line per value: a value that fits none of a field's alternatives (``near``: a number or
    # 'sentence') gets pydantic's error for each alternative, under a tag of its own in the path.
    merged: dict[tuple[Any, ...], list[str]] = {}
    for err in exc.errors():
        # Drop pydantic's internal union/function tags from the path; keep only keys and indexes.
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or not _is_union_tag(str(p)))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        # A model-level validator may put the path into its own message ("feeds[2].name: ...").
        m = re.match(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (.*)$", msg)
        if m and not loc:
            path = m.group(1)
            msg = m.group(2)
            loc = tuple(int(x) if x.isdigit() else x for x in re.findall(r"[a-z_]+|\d+", path))
        env_key = next(
            (name for path, name in (env_paths or {}).items() if tuple(map(str, loc[: len(path)])) == path),
            None,
        )
        line = None if env_key else _line_of(node, loc)
        where = f" (line {line})" if line else f" (from environment {env_key})" if env_key else ""
        messages = merged.setdefault((format_loc(loc), where), [])
        if msg not in messages:
            messages.append(msg)
    return "\n".join(
        f"{source}: {path}{where}: {'; or: '.join(messages)}" for (path, where), messages in merged.items()
    )


# What pydantic puts into an error's path besides keys and indexes: the member of a union that was
# tried (``constrained-int``, ``literal['sentence']``, ``str``, a model's name) or a validator
# (``function-after[...]``). Keys of the config are snake_case; a user's names (feeds, terms) are
# never taken for a tag unless they are written exactly like one of these.
_UNION_TAG_RE = re.compile(r"^(?:constrained-[a-z]+|[a-z][a-z-]*\[.*\])$")
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "bytes", "list", "dict"})


def _is_union_tag(part: str) -> bool:
    if part in _TYPE_TAGS or _UNION_TAG_RE.match(part):
        return True
    model = globals().get(part)
    return isinstance(model, type) and issubclass(model, BaseModel)
