"""What an alert says: the message model, its JSON payload and its text/HTML renderings.

Everything that comes from a feed (titles, sentences, outlet names, URLs) is untrusted: HTML goes
through Jinja2 with autoescaping, header values lose control characters (see ``header_text``), and
links are only emitted for http(s) URLs.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from monitor.highlight import highlight_segments
from monitor.links import safe_url as safe_url  # re-exported for the channels

EVENTS = ("development", "digest", "source_down", "source_back", "test")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")


class DeliveryError(Exception):
    """A send failed. ``permanent``: retrying cannot help (the delivery is marked dead at once);
    ``retry_after``: the receiver asked to wait at least this many seconds."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.status_code = status_code


@dataclass(slots=True)
class SendResult:
    status_code: int | None = None
    detail: str = ""
    # Email: recipients the server refused for now (4xx) while it took the message for the others;
    # the delivery is retried for them alone. ``refused``: every refusal, for the record.
    retry_recipients: tuple[str, ...] = ()
    refused: str = ""


@dataclass(slots=True)
class AlertMessage:
    """One alert to one channel, ready to render."""

    kind: str  # one of EVENTS
    idempotency_key: str
    channel: str
    developments: list[dict[str, Any]] = field(default_factory=list)  # 1 (development), n (digest)
    story_titles: dict[str, str] = field(default_factory=dict)
    feed: dict[str, Any] | None = None  # source_down / source_back: {name, url, error, since}
    # Email: send to these alone (the recipients an earlier attempt could not reach), not to all.
    recipients: tuple[str, ...] = ()

    @property
    def feed_name(self) -> str:
        feed = self.feed or {}
        return str(feed.get("feed") or feed.get("name") or "")

    @property
    def story(self) -> str | None:
        stories = {d["story"] for d in self.developments}
        return stories.pop() if len(stories) == 1 else None

    def subject_fields(self) -> dict[str, str]:
        first = self.developments[0] if self.developments else {}
        story = self.story or (", ".join(sorted({d["story"] for d in self.developments})) or "")
        title = first.get("title", "")
        if self.kind == "digest":
            title = f"{len(self.developments)} neue Entwicklungen"
        elif self.kind in ("source_down", "source_back") and self.feed:
            verb = "ausgefallen" if self.kind == "source_down" else "wieder erreichbar"
            title = f"Quelle {verb}: {self.feed_name}"
        return {
            "story": story or "story-monitor",
            "story_title": self.story_titles.get(self.story or "", story),
            "title": title,
            "kind": self.kind,
            "count": str(len(self.developments)),
            "feed": self.feed_name,
        }


# --- helpers ---------------------------------------------------------------------------------


def header_text(value: str, limit: int = 200) -> str:
    """One header-safe line: control characters (CR, LF, NUL, ...) become spaces."""
    value = _CONTROL_RE.sub(" ", value)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def iso(ts: Any) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, str):
        return ts
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def local_time(ts: Any) -> str:
    if ts is None:
        return ""
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return ts
    return ts.astimezone(local_zone()).strftime("%d.%m.%Y %H:%M")


def local_zone() -> ZoneInfo:
    """The users' time zone: ``MONITOR_TIMEZONE``, default Europe/Berlin (UTC if it is unknown)."""
    try:
        return ZoneInfo(os.environ.get("MONITOR_TIMEZONE", "Europe/Berlin"))
    except Exception:
        return ZoneInfo("UTC")


def highlight(sentence: str, baseline_text: str) -> list[tuple[str, bool]]:
    """(text, is_new) segments of a novel sentence: the words the baseline lacks are new. The same
    judgement as the dashboard's (``monitor.highlight``)."""
    return [(seg.text, seg.new) for seg in highlight_segments(sentence, baseline_text)]


# --- payloads --------------------------------------------------------------------------------


def development_json(dev: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": dev["id"],
        "story": dev["story"],
        "title": dev["title"],
        "first_seen": iso(dev["first_seen"]),
        "score": float(dev["score"]),
        "novel": list(dev["novel"]),
        "sources": [
            {
                "url": s.get("url"),
                "feed": s.get("feed"),
                "title": s.get("title"),
                "published": iso(s.get("published")),
            }
            for s in dev.get("sources", [])
        ],
    }


def payload(message: AlertMessage) -> dict[str, Any]:
    """The JSON body of a ``format: json`` webhook; documented by docs/webhook-payload.schema.json.
    Deterministic for a given delivery, so a retried body is byte-identical."""
    body: dict[str, Any] = {"event": message.kind, "idempotency_key": message.idempotency_key}
    if message.kind in ("development", "test"):
        dev = message.developments[0]
        body["story"] = dev["story"]
        body["story_title"] = message.story_titles.get(dev["story"], dev["story"])
        body["development"] = development_json(dev)
    elif message.kind == "digest":
        body["developments"] = [development_json(d) for d in message.developments]
        body["count"] = len(message.developments)
    else:
        feed = message.feed or {}
        body["feed"] = {
            "name": feed.get("feed") or feed.get("name"),
            "url": feed.get("url"),
            "error": feed.get("error"),
            "since": iso(feed.get("since")),
        }
        for optional in ("disabled", "disabled_reason", "back_at"):
            if feed.get(optional) is not None:
                body["feed"][optional] = feed[optional]
    return body


# --- text and HTML ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("monitor.alert", "templates"),
        # Autoescape every .html template (and any string template): feed text is untrusted.
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


class Renderer:
    """Renders messages to a subject, a plain-text body and an HTML body."""

    def __init__(self, baselines: dict[str, str] | None = None) -> None:
        self.baselines = baselines or {}

    def context(self, message: AlertMessage) -> dict[str, Any]:
        devs = []
        for dev in message.developments:
            base = self.baselines.get(dev["story"], "")
            devs.append(
                {
                    "story": dev["story"],
                    "story_title": message.story_titles.get(dev["story"], dev["story"]),
                    "title": header_text(dev["title"], 500),
                    "first_seen": local_time(dev["first_seen"]),
                    "score": float(dev["score"]),
                    "novel": [highlight(s, base) for s in dev["novel"]],
                    "novel_plain": list(dev["novel"]),
                    "sources": [
                        {
                            "feed": s.get("feed") or "",
                            "title": s.get("title") or "",
                            "published": local_time(s.get("published")),
                            "url": safe_url(s.get("url")),
                        }
                        for s in dev.get("sources", [])
                    ],
                }
            )
        feed = dict(message.feed or {})
        if feed:
            feed = {
                "name": feed.get("feed") or feed.get("name") or "",
                "url": feed.get("url") or "",
                "error": feed.get("error") or "",
                "since": local_time(feed.get("since")),
            }
        return {
            "kind": message.kind,
            "key": message.idempotency_key,
            "developments": devs,
            "feed": feed,
            "zone": os.environ.get("MONITOR_TIMEZONE", "Europe/Berlin"),
        }

    def subject(self, message: AlertMessage, template: str) -> str:
        fields = {k: header_text(v) for k, v in message.subject_fields().items()}
        if message.kind == "digest":
            template = "[{story}] {title}" if "{title}" in template else template
        try:
            text = string.Formatter().vformat(template, (), fields)
        except (KeyError, IndexError, ValueError):
            text = "[{story}] {title}".format(**fields)
        if message.kind == "test":
            text = "[Test] " + text
        return header_text(text)

    def text(self, message: AlertMessage) -> str:
        return _env().get_template("alert.txt").render(**self.context(message))

    def html(self, message: AlertMessage) -> str:
        return _env().get_template("alert.html").render(**self.context(message))

    def title_and_body(self, message: AlertMessage) -> tuple[str, str]:
        """For chat-like channels (Apprise, Slack, Teams): a short title and a text body."""
        return self.subject(message, "[{story}] {title}"), self.text(message)
