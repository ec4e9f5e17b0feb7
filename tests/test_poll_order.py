"""A `monitor poll` reports the same developments whichever feed answers first.

Two outlets carry the same news with the same date (day-precise dates and wire copies make that
common). Which of them opens the development decides its title and key, hence what the alert says:
it must follow from the items (``diff.diff_items``), not from which feed's response happened to
come back and be written first. The poll writes the feeds that answer within its gather time in one
batch (``GroupCommit.expect``) and diffs that batch's items together (``Monitor._diff_batch``).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests import diff_texts as T
from tests.conftest import Project
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer

SAME_DAY = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)  # a date without a time, as many outlets give
REPORTS = {
    "nordkurier": FakeEntry(
        "nk-1",
        T.CANCELLATION_TITLE,
        " ".join(T.CANCELLATION.split()),
        "https://nordkurier.example/1",
        SAME_DAY,
    ),
    "suedblatt": FakeEntry(
        "sb-1",
        T.CANCELLATION_COPY_TITLE,
        " ".join(T.CANCELLATION_COPY.split()),
        "https://suedblatt.example/1",
        SAME_DAY,
    ),
}


def _poll_answering_in_order(tmp_path: Path, first: str, then: str) -> list[dict[str, Any]]:
    """A first poll of both feeds in a fresh database, where ``then`` answers only once ``first``
    has sent its whole response; the developments it found."""
    answered = threading.Event()

    def serve(name: str, after: threading.Event | None):  # type: ignore[no-untyped-def]
        body = rss([REPORTS[name]], title=name).encode()

        def handler(req: BaseHTTPRequestHandler) -> None:
            if after is not None:
                assert after.wait(30), f"{first} was never requested"
            req.send_response(200)
            req.send_header("Content-Type", "application/rss+xml")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
            req.wfile.flush()
            if after is None:
                answered.set()

        return handler

    tmp_path.mkdir()
    project = Project(tmp_path)
    with FeedServer() as server:
        server.route(f"/{first}.xml", serve(first, None))
        server.route(f"/{then}.xml", serve(then, answered))
        project.write(
            {
                "fetch": {"allow_private_addresses": True},
                "feeds": [{"name": n, "url": server.url(f"/{n}.xml")} for n in sorted(REPORTS)],
                "stories": [T.STORY],
            }
        )
        poll = project.cli("poll")
        assert poll.exit_code == 0, poll.stderr
        assert answered.is_set()
    return project.cli("developments", "--json").json()


def _essence(developments: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (d["key"], d["title"], tuple(d["novel"]), tuple(sorted(s["feed"] for s in d["sources"])))
        for d in developments
    ]


def test_the_same_news_opens_the_same_development_whichever_feed_answers_first(tmp_path: Path) -> None:
    north_first = _poll_answering_in_order(tmp_path / "a", "nordkurier", "suedblatt")
    south_first = _poll_answering_in_order(tmp_path / "b", "suedblatt", "nordkurier")
    # one development, with both outlets as its sources
    assert len(north_first) == 1
    assert _essence(north_first)[0][3] == ("nordkurier", "suedblatt")
    assert _essence(north_first) == _essence(south_first)
