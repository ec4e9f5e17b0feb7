"""The story desk: dashboard pages, JSON API, Atom feeds. Read-only.

FastAPI (on Starlette) because the JSON API's OpenAPI schema is generated from the same pydantic
models that validate every response: the documented schema cannot drift from what the API sends.
Pages are Jinja2 templates with autoescaping (feed text is untrusted), no JavaScript at all, and a
Content-Security-Policy that forbids scripts as a second line of defence.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import jinja2
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.config import Config
from monitor.highlight import highlight_segments
from monitor.store import Store
from monitor.web import chart as chartlib
from monitor.web import export, views

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE = "monitor_token"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


# --- API models (the OpenAPI schema is generated from these) -----------------------------------


class StoryOut(BaseModel):
    id: str
    title: str
    configured: bool = Field(description="false for a story that is in the database but no longer configured")
    items: int = Field(description="matched items")
    outlets: int = Field(description="distinct feeds with matched items")
    developments: int
    first_item: datetime | None = Field(description="publication time of the earliest matched item (UTC)")
    last_item: datetime | None
    last_development: datetime | None


class SourceOut(BaseModel):
    url: str | None
    feed: str
    title: str
    published: datetime
    sentences: list[str] = Field(description="the novel sentences this source contributes")
    first: bool = Field(description="the earliest source of the development")


class DevelopmentOut(BaseModel):
    id: int
    uid: str = Field(description="stable id (urn:uuid), the same as the Atom entry id")
    story: str
    title: str
    first_seen: datetime
    updated_at: datetime | None
    score: float
    novel: list[str] = Field(description="sentences new against the baseline and the story so far")
    terms: list[str]
    update_of: int | None
    sources: list[SourceOut]


class ItemOut(BaseModel):
    story: str
    item_id: int
    url: str | None
    title: str
    feed: str
    published: datetime
    first_seen: datetime
    matched: list[str] = Field(description="the story's terms found in the item")
    score: float


class FeedOut(BaseModel):
    name: str
    url: str
    configured_url: str
    status: Literal["ok", "failing", "down", "disabled", "new"]
    last_polled: datetime | None
    last_success: datetime | None
    last_status: int | None
    last_error_kind: str | None
    last_error: str | None
    error_streak: int
    failing_since: datetime | None
    disabled_reason: str | None
    items: int
    polls: int
    not_modified_ratio: float | None = Field(description="share of polls answered 304 Not Modified")
    latency_avg: float | None = Field(description="seconds, moving average")


class TimelinePointOut(BaseModel):
    start: datetime = Field(description="start of the hour (UTC)")
    feed: str
    count: int


class ErrorOut(BaseModel):
    detail: str


# --- auth --------------------------------------------------------------------------------------


class BearerTokenMiddleware:
    """When a token is configured, every request needs it: ``Authorization: Bearer <token>``, the
    RFC 6750 ``access_token`` query parameter (for feed readers) or the cookie a page visit with
    ``?access_token=`` sets (so links in the dashboard work in a browser)."""

    def __init__(self, app: ASGIApp, token: str, *, https: bool = False) -> None:
        self.app = app
        self.token = token.encode()
        self.https = https  # the desk is reached over https (web.base_url), e.g. through a TLS proxy

    def _ok(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token)  # type: ignore[union-attr]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
        query = request.query_params.get("access_token")
        cookie = request.cookies.get(TOKEN_COOKIE)
        if self._ok(bearer) or self._ok(cookie):
            await self.app(scope, receive, send)
            return
        if self._ok(query):
            # Behind the TLS reverse proxy the README recommends the app itself is reached over
            # plain http: the cookie must still be Secure, or the browser sends the token over http.
            forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            secure = self.https or request.url.scheme == "https" or forwarded == "https"

            async def send_with_cookie(message: Any) -> None:
                if message["type"] == "http.response.start":
                    cookie_value = f"{TOKEN_COOKIE}={query}; Path=/; HttpOnly; SameSite=Strict" + (
                        "; Secure" if secure else ""
                    )
                    message.setdefault("headers", []).append((b"set-cookie", cookie_value.encode()))
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        response = JSONResponse(
            {"detail": "authentication required: send 'Authorization: Bearer <token>'"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="story-monitor"', **SECURITY_HEADERS},
        )
        await response(scope, receive, send)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {k.lower() for k, _ in headers}
                for k, v in SECURITY_HEADERS.items():
                    if k.lower().encode() not in present:
                        headers.append((k.lower().encode(), v.encode()))
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- the app -----------------------------------------------------------------------------------


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every {{ }} is escaped: feed text is untrusted
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    zone = views.display_zone()

    def local(ts: datetime | None, fmt: str = "%d.%m.%Y %H:%M") -> str:
        return ts.astimezone(zone).strftime(fmt) if ts else "–"

    env.filters["local"] = local
    env.filters["iso"] = lambda ts: export.iso(ts) if ts else ""
    env.filters["safe_url"] = views.safe_url
    env.filters["percent"] = lambda v: f"{v:.0%}" if v is not None else "–"
    env.globals["time_zone"] = str(zone)  # 'Europe/Berlin', or what MONITOR_TIMEZONE names
    return Jinja2Templates(env=env)


def create_app(config: Config, store: Store | None = None, token: str | None = None) -> FastAPI:
    """The ASGI app over a config and its database. ``token``: require this bearer token."""
    store = store or Store(config.database)
    store.create_schema()
    templates = _templates()
    app = FastAPI(
        title="story-monitor",
        version="1",
        description=(
            "Read-only JSON API of the story desk: stories, their developments (new facts against "
            "the baseline, with sources), matched items and feed health. Times are ISO 8601 in UTC."
            + (" Every request needs `Authorization: Bearer <token>`." if token else "")
        ),
        docs_url=None,  # Swagger UI needs scripts from a CDN: the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.config = config
    app.state.store = store
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    if token:
        original_openapi = app.openapi

        def openapi_with_security() -> dict[str, Any]:
            schema = original_openapi()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            schema["security"] = [{"bearer": []}]
            return schema

        app.openapi = openapi_with_security  # type: ignore[method-assign]

    def known_story(story_id: str) -> dict[str, Any]:
        for story in views.stories(config, store):
            if story["id"] == story_id:
                return story
        raise HTTPException(404, f"unknown story {story_id!r}")

    # -- API ------------------------------------------------------------------------------------

    not_found = {404: {"model": ErrorOut, "description": "unknown story"}}

    @app.get("/api/stories", response_model=list[StoryOut], tags=["api"])
    def api_stories() -> list[dict[str, Any]]:
        """Configured stories with their counts."""
        return views.stories(config, store)

    @app.get(
        "/api/stories/{story_id}/developments",
        response_model=list[DevelopmentOut],
        responses=not_found,  # type: ignore[arg-type]
        tags=["api"],
    )
    def api_developments(story_id: str) -> list[dict[str, Any]]:
        """The story's developments, newest first, each with its sources (earliest first)."""
        known_story(story_id)
        return [
            {**d, "uid": export.development_uuid(d["story"], d["key"])}
            for d in views.developments(store, story_id)
        ]

    @app.get(
        "/api/stories/{story_id}/timeline",
        response_model=list[TimelinePointOut],
        responses=not_found,  # type: ignore[arg-type]
        tags=["api"],
    )
    def api_timeline(story_id: str) -> list[dict[str, Any]]:
        """Matched items per hour (UTC) and outlet: the data behind the timeline chart."""
        known_story(story_id)
        return [{"start": s, "feed": f, "count": c} for s, f, c in views.timeline(store, story_id)]

    @app.get("/api/items", response_model=list[ItemOut], tags=["api"])
    def api_items(
        story: Annotated[str | None, Query(description="only this story", max_length=64)] = None,
        since: Annotated[datetime | None, Query(description="published at or after (ISO 8601)")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """Matched items, newest first."""
        return store.matched_items(story, since, limit)

    @app.get("/api/feeds", response_model=list[FeedOut], tags=["api"])
    def api_feeds() -> list[dict[str, Any]]:
        """Feed health, failing and disabled feeds first."""
        return views.feed_health(config, store)

    # -- Atom -----------------------------------------------------------------------------------

    @app.get(
        "/stories/{story_id}/developments.atom",
        response_class=Response,
        responses={200: {"content": {"application/atom+xml": {}}}, **not_found},  # type: ignore[dict-item]
        tags=["feeds"],
    )
    def atom(story_id: str, request: Request) -> Response:
        """The story's developments as an Atom 1.0 feed, for feed readers."""
        story = known_story(story_id)
        base = (config.web.base_url or str(request.base_url)).rstrip("/")
        body = export.developments_atom(
            story_id,
            story["title"],
            views.developments(store, story_id),
            self_url=f"{base}/stories/{story_id}/developments.atom",
            alternate_url=f"{base}/stories/{story_id}",
        )
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    # -- pages ----------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> Response:
        stories = views.stories(config, store)
        feeds = views.feed_health(config, store)
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "stories": stories,
                "feeds": feeds,
                "failing": [f for f in feeds if f["status"] in ("failing", "down", "disabled")],
            },
        )

    @app.get("/feeds", response_class=HTMLResponse, include_in_schema=False)
    def feeds_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "feeds.html", {"feeds": views.feed_health(config, store)})

    @app.get("/stories/{story_id}", response_class=HTMLResponse, include_in_schema=False)
    def story_page(
        request: Request, story_id: str, bucket: Literal["auto", "hour", "day"] = "auto"
    ) -> Response:
        story = known_story(story_id)
        devs = views.developments(store, story_id)
        chronological = list(reversed(devs))
        rows = views.timeline(store, story_id)
        chosen = (
            chartlib.choose_bucket(story["first_item"], story["last_item"]) if bucket == "auto" else bucket
        )
        chart = chartlib.build_chart(
            rows,
            [(d["id"], d["title"], d["first_seen"]) for d in chronological],
            chosen,
            views.display_zone(),
        )
        numbers = {m.development_id: m.number for m in chart.markers}
        base = views.baseline(config, story_id)
        for dev in devs:
            dev["highlighted"] = [highlight_segments(s, base["text"]) for s in dev["novel"]]
            dev["number"] = numbers.get(dev["id"])
        feeds = views.feed_health(config, store)
        return templates.TemplateResponse(
            request,
            "story.html",
            {
                "story": story,
                "developments": devs,
                "chronological": chronological,
                "chart": chart,
                "bucket": chosen,
                "bucket_links": {b: "?" + urlencode({"bucket": b}) for b in ("hour", "day")},
                "baseline": base,
                "items": store.matched_items(story_id, None, 30),
                "feeds": feeds,
            },
        )

    @app.get("/robots.txt", response_class=PlainTextResponse, include_in_schema=False)
    def robots() -> str:
        return "User-agent: *\nDisallow: /\n"

    app.add_middleware(SecurityHeadersMiddleware)
    if token:
        # Outermost: nothing runs without it.
        https = str(config.web.base_url or "").startswith("https:")
        app.add_middleware(BearerTokenMiddleware, token=token, https=https)
    return app
