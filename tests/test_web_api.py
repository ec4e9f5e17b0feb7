"""The JSON API behind the pages: shapes, its OpenAPI schema (checked by schemathesis), read-only,
bearer token, security headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from monitor.config import load_config
from monitor.web import create_app
from tests.conftest import Project
from tests.servers import FeedServer
from tests.web_support import STORY_ID, Desk, ServedDesk, build_desk


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    with FeedServer() as server:
        yield build_desk(Project(tmp_path_factory.mktemp("api")), server)


@pytest.fixture(scope="module")
def app(desk: Desk) -> Any:
    return create_app(load_config(desk.project.config_path))


@pytest.fixture(scope="module")
def api_schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_api_answers_per_its_openapi_schema(api_schema: Any) -> None:
    """Every operation, with generated parameters: no server errors, status codes, content types
    and bodies as documented (schemathesis' checks). Driven per operation rather than with
    ``schemathesis.pytest.from_fixture``, which does not work with pytest 9."""
    labels = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            case.call_and_validate()

        check()
    assert "GET /api/stories/{story_id}/developments" in labels and "GET /api/items" in labels


@pytest.fixture(scope="module")
def served(desk: Desk) -> Iterator[ServedDesk]:
    served = ServedDesk(desk.project)
    yield served
    assert served.stop() == 0


def test_openapi_documents_every_api_path(served: ServedDesk) -> None:
    doc = httpx.get(served.url + "/openapi.json", timeout=20).json()
    assert doc["openapi"].startswith("3.")
    assert {
        "/api/stories",
        "/api/stories/{story_id}/developments",
        "/api/items",
        "/api/feeds",
        "/stories/{story_id}/developments.atom",
    } <= set(doc["paths"])
    dev = doc["components"]["schemas"]["DevelopmentOut"]["properties"]
    assert {"id", "uid", "story", "title", "first_seen", "sources", "novel", "score"} <= set(dev)


def test_api_content(served: ServedDesk, desk: Desk) -> None:
    get = lambda path: httpx.get(served.url + path, timeout=20)  # noqa: E731
    stories = get("/api/stories").json()
    assert stories == [
        {
            "id": STORY_ID,
            "title": "Trump–Putin-Gipfel in Budapest",
            "configured": True,
            "items": stories[0]["items"],
            "outlets": 3,
            "developments": 3,
            "first_item": "2025-10-16T06:00:00Z",
            "last_item": stories[0]["last_item"],
            "last_development": "2025-10-16T13:10:00Z",
        }
    ]
    assert stories[0]["items"] == len(desk.store.matched_items(STORY_ID))
    devs = get(f"/api/stories/{STORY_ID}/developments").json()
    assert [d["first_seen"] for d in devs] == sorted((d["first_seen"] for d in devs), reverse=True)
    cancel = devs[0]
    assert cancel["title"] == "Budapest-Gipfel auf Eis gelegt"
    assert [s["feed"] for s in cancel["sources"]] == ["zeitung", "blatt"]
    assert [s["first"] for s in cancel["sources"]] == [True, False]
    assert get("/api/stories/nope/developments").status_code == 404
    items = get(f"/api/items?story={STORY_ID}&limit=5&since=2025-10-16T10:00:00Z").json()
    assert len(items) == 5
    assert all(i["published"] >= "2025-10-16T10:00:00Z" for i in items)
    assert get("/api/items?limit=0").status_code == 422
    # times whose UTC falls outside the years 1-9999: the earliest and the latest there is
    everything = get(f"/api/items?story={STORY_ID}&limit=1000&since=0001-01-01T00:00:00%2B01:00")
    assert everything.status_code == 200 and len(everything.json()) == stories[0]["items"]
    nothing = get(f"/api/items?story={STORY_ID}&since=9999-12-31T23:59:59-01:00")
    assert nothing.status_code == 200 and nothing.json() == []
    feeds = get("/api/feeds").json()
    assert feeds[0]["name"] == "kaputt" and feeds[0]["status"] == "failing" and feeds[0]["error_streak"] == 1
    assert {f["status"] for f in feeds[1:]} == {"ok"}
    timeline = get(f"/api/stories/{STORY_ID}/timeline").json()
    assert sum(p["count"] for p in timeline) == stories[0]["items"]


def test_read_only_and_security_headers(served: ServedDesk) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = httpx.request(method, served.url + "/api/stories", timeout=20)
        assert response.status_code == 405, method
    page = httpx.get(served.url + f"/stories/{STORY_ID}", timeout=20)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


def test_hostile_text_is_escaped_in_the_html(served: ServedDesk) -> None:
    html = httpx.get(served.url + f"/stories/{STORY_ID}", timeout=20).text
    assert "<script" not in html.lower()
    assert "onerror=" not in html.replace("onerror=&#34;", "").replace("onerror=&quot;", "")
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "javascript:" not in html


def test_the_pages_name_the_time_zone_their_times_are_in(served: ServedDesk, desk: Desk) -> None:
    """The footer named Europe/Berlin whatever ``MONITOR_TIMEZONE`` said the times were in."""
    assert "times in Europe/Berlin" in httpx.get(served.url + "/", timeout=20).text
    elsewhere = ServedDesk(desk.project, env={"MONITOR_TIMEZONE": "America/New_York"})
    try:
        page = httpx.get(elsewhere.url + "/", timeout=20).text
    finally:
        elsewhere.stop()
    assert "times in America/New_York" in page and "Europe/Berlin" not in page


def test_bearer_token_is_required_for_everything(desk: Desk) -> None:
    env = {"MONITOR_WEB__TOKEN_ENV": "DESK_TOKEN", "DESK_TOKEN": "geheim-123"}
    served = ServedDesk(desk.project, env=env)
    try:
        for path in (
            "/",
            "/api/stories",
            "/openapi.json",
            f"/stories/{STORY_ID}/developments.atom",
            "/static/style.css",
        ):
            anonymous = httpx.get(served.url + path, timeout=20)
            assert anonymous.status_code == 401, path
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            wrong = httpx.get(served.url + path, headers={"Authorization": "Bearer falsch"}, timeout=20)
            assert wrong.status_code == 401, path
            right = httpx.get(served.url + path, headers={"Authorization": "Bearer geheim-123"}, timeout=20)
            assert right.status_code == 200, path
        # Feed readers: the RFC 6750 query parameter.
        atom = httpx.get(
            served.url + f"/stories/{STORY_ID}/developments.atom",
            params={"access_token": "geheim-123"},
            timeout=20,
        )
        assert atom.status_code == 200 and atom.headers["content-type"].startswith("application/atom+xml")
        doc = httpx.get(
            served.url + "/openapi.json", headers={"Authorization": "Bearer geheim-123"}, timeout=20
        )
        assert doc.json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        # A page visit with the token sets the cookie; Secure when the browser came over https,
        # which behind a TLS reverse proxy only the proxy's X-Forwarded-Proto tells.
        visit = {"access_token": "geheim-123"}
        plain = httpx.get(served.url + "/", params=visit, timeout=20).headers["set-cookie"]
        assert plain.startswith("monitor_token=geheim-123;") and "HttpOnly" in plain
        assert "Secure" not in plain
        proxied = httpx.get(
            served.url + "/", params=visit, headers={"X-Forwarded-Proto": "https"}, timeout=20
        )
        assert proxied.headers["set-cookie"].endswith("; Secure")
    finally:
        assert served.stop() == 0
    # web.base_url says the desk is reached over https: always Secure
    env["MONITOR_WEB__BASE_URL"] = "https://desk.example.org"
    served = ServedDesk(desk.project, env=env)
    try:
        cookie = httpx.get(served.url + "/", params={"access_token": "geheim-123"}, timeout=20).headers[
            "set-cookie"
        ]
        assert cookie.endswith("; Secure")
    finally:
        assert served.stop() == 0


def test_serve_refuses_a_missing_token_variable(desk: Desk) -> None:
    result = desk.project.cli("serve", env={"MONITOR_WEB__TOKEN_ENV": "NOT_SET_ANYWHERE"})
    assert result.exit_code == 2
    assert "web.token_env" in result.stderr and "NOT_SET_ANYWHERE" in result.stderr


def test_serve_reports_a_port_in_use(desk: Desk) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        result = desk.project.cli("serve", "--port", str(busy.getsockname()[1]))
    assert result.exit_code == 1
    assert "cannot listen on 127.0.0.1" in result.stderr
