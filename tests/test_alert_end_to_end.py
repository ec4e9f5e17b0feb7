"""From a feed to the receiver: ``monitor poll`` on a loopback feed finds a development, stores it
with its outbox delivery in one transaction and sends it to a verifying webhook receiver once;
polling again sends nothing more."""

from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import pytest

from tests import diff_texts
from tests.alert_helpers import SECRET, WebhookReceiver, read_schema
from tests.conftest import ROOT, Project
from tests.feeds import FakeEntry, rss
from tests.servers import FeedServer


def test_poll_sends_each_new_development_once(
    project: Project, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    story = {
        "id": "graz-summit",
        "title": "Gipfel in Graz",
        "baseline": {"text": diff_texts.BASELINE},
        "keywords": ["Graz", "Berger", "Ostrow"],
    }
    entry = FakeEntry(
        "e2e-1",
        diff_texts.CANCELLATION_TITLE,
        diff_texts.CANCELLATION,
        "https://example.org/abgesagt",
        datetime.now(UTC),
        content=diff_texts.CANCELLATION,
    )
    feed_server.put("/feed.xml", rss([entry]))
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("HOOK_SECRET", SECRET)
        project.write(
            {
                "feeds": [{"name": "Testquelle", "url": feed_server.url("/feed.xml")}],
                "fetch": {"allow_private_addresses": True},
                "stories": [story],
                "alerts": {
                    "webhooks": [{"url": receiver.url, "name": "newsroom", "secret_env": "HOOK_SECRET"}]
                },
            }
        )
        first = project.cli("poll", "--json")
        assert first.exit_code == 0, first.stderr
        developments = project.cli("developments", "--json").json()
        if not developments:
            pytest.fail("the diff stage flagged no development for a cancellation report")
        assert len(receiver.accepted) == len(developments)
        assert all(r.status == 204 for r in receiver.requests)  # signatures verified
        schema = read_schema(ROOT)
        for req in receiver.accepted:
            jsonschema.validate(req.json(), schema)
        assert {r.json()["development"]["id"] for r in receiver.accepted} == {d["id"] for d in developments}
        again = project.cli("poll", "--json")
        assert again.exit_code == 0
        assert len(receiver.requests) == len(developments)
