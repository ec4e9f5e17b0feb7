"""Poll, match, store, list: against real feeds on a loopback HTTP server."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.conftest import STORY, Project
from tests.feeds import FakeEntry, atom, rdf, rss
from tests.servers import FeedServer

T0 = datetime(2025, 10, 17, 8, 0, tzinfo=UTC)

SUMMIT = FakeEntry(
    guid="tz-1",
    title="Selenski reist nach Washington – es geht um Tomahawk-Marschflugkörper",
    text="Der ukrainische Präsident will in Washington über weitreichende Waffen sprechen. Die Stimmung ist gespannt.",
    link="https://example.org/politik/selenski-washington?utm_source=rss&id=7",
    published=T0,
)
UNRELATED = FakeEntry(
    guid="tz-2",
    title="Oktoberfest-Bilanz: Weniger Maß, mehr Wasser",
    text="Die Wiesn ist vorbei. Größere Zwischenfälle gab es nicht.",
    link="https://example.org/panorama/wiesn",
    published=T0,
)


def config_for(server: FeedServer, paths: dict[str, str]) -> dict:
    return {
        "fetch": {"interval": "1s", "jitter": "0s"},
        "feeds": [{"name": name, "url": server.url(path)} for name, path in paths.items()],
        "stories": [STORY],
    }


def test_poll_stores_matching_items_in_json_shape(project: Project, feed_server: FeedServer) -> None:
    feed_server.put("/rss.xml", rss([SUMMIT, UNRELATED]))
    feed_server.put(
        "/atom.xml",
        atom(
            [
                FakeEntry(
                    "urn:a:1",
                    "Zelensky trifft Trump",
                    "Gespräch über Tomahawks im Weißen Haus.",
                    "https://example.org/a1",
                    T0,
                )
            ]
        ),
        content_type="application/atom+xml",
    )
    feed_server.put(
        "/rdf.xml",
        rdf(
            [
                FakeEntry(
                    None,
                    "Straßenbahn fährt wieder",
                    "Die Linie 4 ist repariert.",
                    "https://example.org/r1",
                    T0,
                )
            ]
        ),
        content_type="application/rdf+xml",
    )
    project.write(
        config_for(feed_server, {"zeitung": "/rss.xml", "atomblatt": "/atom.xml", "rdfblatt": "/rdf.xml"})
    )

    result = project.cli("poll")
    assert result.exit_code == 0, result.stderr
    assert "3 feeds" in result.stdout

    items = project.cli("items", "--json").json()
    assert sorted(i["title"] for i in items) == sorted([SUMMIT.title, "Zelensky trifft Trump"])
    by_title = {i["title"]: i for i in items}
    summit = by_title[SUMMIT.title]
    assert summit["story"] == "budapest-summit"
    assert summit["feed"] == "zeitung"
    assert summit["url"] == "https://example.org/politik/selenski-washington?id=7"  # utm_* dropped
    assert summit["published"] == "2025-10-17T08:00:00Z"
    assert set(summit["matched"]) >= {"Selenski", "Tomahawk"}
    assert by_title["Zelensky trifft Trump"]["feed"] == "atomblatt"


def test_second_poll_is_conditional_and_stores_nothing_new(project: Project, feed_server: FeedServer) -> None:
    feed_server.put("/rss.xml", rss([SUMMIT, UNRELATED]))
    project.write(config_for(feed_server, {"zeitung": "/rss.xml"}))
    assert project.cli("poll").exit_code == 0
    first = project.cli("items", "--json").json()
    assert project.cli("poll").exit_code == 0

    second_request = feed_server.requests_for("/rss.xml")[1]
    assert second_request.headers.get("If-None-Match")
    assert second_request.headers.get("If-Modified-Since")
    assert second_request.status == 304
    assert project.cli("items", "--json").json() == first
    feeds = project.cli("feeds", "--json").json()
    assert feeds[0]["items"] == 2 and feeds[0]["polls"] == 2 and feeds[0]["not_modified_ratio"] == 0.5


def test_changed_feed_adds_only_new_items_and_updates_in_place(
    project: Project, feed_server: FeedServer
) -> None:
    feed_server.put("/rss.xml", rss([SUMMIT, UNRELATED]))
    project.write(config_for(feed_server, {"zeitung": "/rss.xml"}))
    assert project.cli("poll").exit_code == 0

    corrected = FakeEntry(SUMMIT.guid, SUMMIT.title + " (aktualisiert)", SUMMIT.text, SUMMIT.link, T0)
    newer = FakeEntry(
        "tz-3",
        "Selenskyj im Weißen Haus eingetroffen",
        "Er wurde von Trump empfangen.",
        "https://example.org/p/3",
        T0,
    )
    feed_server.put("/rss.xml", rss([newer, corrected, UNRELATED]))
    out = project.cli("poll", "--json").json()
    assert out["feeds"][0]["new"] == 1
    assert out["feeds"][0]["updated"] == 1

    items = project.cli("items", "--json").json()
    titles = sorted(i["title"] for i in items)
    assert titles == sorted([corrected.title, newer.title])
    assert project.cli("feeds", "--json").json()[0]["items"] == 3


def test_an_item_keeps_its_id_when_the_feed_switches_parser(
    project: Project, feed_server: FeedServer
) -> None:
    """Bare guids ("1000", a permalink by default): feedparser once resolved them against the feed's
    URL, the fast parser did not, so one stray '&' (which sends the document to feedparser) made
    every item new again."""
    body = rss([SUMMIT, UNRELATED]).replace('<guid isPermaLink="false">', "<guid>")
    feed_server.put("/rss.xml", body)
    project.write(config_for(feed_server, {"zeitung": "/rss.xml"}))
    first = project.cli("poll", "--json").json()["feeds"][0]
    assert first["new"] == 2
    # The same items, and a stray ampersand in the channel's description: not well-formed XML.
    feed_server.put(
        "/rss.xml", body.replace("<description>Test</description>", "<description>A & B</description>")
    )
    again = project.cli("poll", "--json").json()["feeds"][0]
    assert again["status"] == "ok" and again["new"] == 0 and again["updated"] == 0
    assert project.cli("feeds", "--json").json()[0]["items"] == 2


def test_server_ignoring_conditional_get_is_not_reparsed(project: Project, feed_server: FeedServer) -> None:
    feed_server.put("/rss.xml", rss([SUMMIT]), conditional=False)
    project.write(config_for(feed_server, {"zeitung": "/rss.xml"}))
    assert project.cli("poll").exit_code == 0
    out = project.cli("poll", "--json").json()
    assert out["feeds"][0]["status"] == "unchanged"
    assert out["feeds"][0]["new"] == 0


def test_failing_feed_is_reported_and_poll_still_exits_zero(
    project: Project, feed_server: FeedServer
) -> None:
    feed_server.put("/rss.xml", rss([SUMMIT]))
    project.write(config_for(feed_server, {"gut": "/rss.xml", "kaputt": "/missing.xml"}))
    result = project.cli("poll")
    assert result.exit_code == 0
    assert "kaputt" in result.stdout and "404" in result.stdout
    feeds = {f["name"]: f for f in project.cli("feeds", "--json").json()}
    assert feeds["kaputt"]["status"] == "failing" and feeds["kaputt"]["error_streak"] == 1
    assert feeds["gut"]["status"] == "ok"
    assert len(project.cli("items", "--json").json()) == 1
