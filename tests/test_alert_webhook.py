"""Webhook alerts against a real HTTP receiver on 127.0.0.1 that verifies Standard Webhooks
signatures with the ``standardwebhooks`` package."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import anyio
import jsonschema
import pytest

from monitor.alert.worker import DeliveryRunReport
from monitor.config import Config, load_config
from monitor.pipeline import Monitor
from monitor.store import Store
from monitor.store.models import utcnow
from monitor.store.outbox import Outbox
from tests.alert_helpers import SECRET, WebhookReceiver, add_developments, read_schema, wait_for
from tests.conftest import ROOT, STORY, Project

FAST_RETRY = {"backoff": "0.05s", "max_backoff": "0.2s", "jitter": 0.0, "lease": "5s"}


@pytest.fixture
def receiver() -> Any:
    with WebhookReceiver() as r:
        yield r


def _config(project: Project, hooks: list[dict[str, Any]], **alerts: Any) -> Config:
    project.write(
        {"feeds": [], "stories": [STORY], "alerts": {"webhooks": hooks, "retry": FAST_RETRY, **alerts}}
    )
    return load_config(project.config_path)


def _signed_ops(project: Project, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> Config:
    """One webhook channel, ``webhook:ops``, signing with the secret the receiver verifies."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    return _config(project, [{"url": receiver.url, "name": "ops", "secret_env": "HOOK_SECRET"}])


def deliver(config: Config, *, drain: bool = True) -> Any:
    async def main() -> Any:
        async with Monitor(config) as monitor:
            return await monitor.deliver_pending(drain=drain)

    return anyio.run(main)


def deliver_until(config: Config, done: Any, timeout: float = 20.0) -> None:
    """Run the worker (as the daemon's schedule would) until ``done()``; bounded."""

    async def main() -> None:
        async with Monitor(config) as monitor:
            with anyio.fail_after(timeout):
                while not done():
                    await monitor.deliver_pending(drain=True)
                    await anyio.sleep(0.05)

    anyio.run(main)


def test_signed_payload_verifies_and_matches_the_schema(
    project: Project, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _signed_ops(project, receiver, monkeypatch)
    store = Store(config.database)
    dev_ids = add_developments(
        store, ["webhook:ops"], ["Gipfel in Budapest verschoben", "Tomahawk-Lieferung genehmigt"]
    )

    report = deliver(config)

    assert report.sent == 2 and report.failed == 0
    assert [r.status for r in receiver.requests] == [204, 204]  # 401 would mean a bad signature
    schema = read_schema(ROOT)
    for req in receiver.requests:
        body = req.json()
        jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
        assert req.headers["webhook-id"] == body["idempotency_key"]
        assert body["event"] == "development" and body["story"] == "budapest-summit"
        assert body["story_title"] == STORY["title"]
        assert body["development"]["sources"][0]["url"].startswith("https://example.org/")
    assert [r.json()["development"]["id"] for r in receiver.requests] == dev_ids
    keys = [r.msg_id for r in receiver.requests]
    assert keys[0].startswith("dev-budapest-summit-") and keys[0].endswith("-webhook:ops")
    rows = Outbox(store).list()
    assert {r.status for r in rows} == {"sent"}
    # Nothing left: a second pass sends nothing.
    assert deliver(config).claimed == 0
    assert len(receiver.requests) == 2


def test_a_wrong_secret_is_rejected_by_the_receiver(
    project: Project, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is real: a body signed with another secret does not verify."""
    import base64

    monkeypatch.setenv("HOOK_SECRET", "whsec_" + base64.b64encode(b"another secret entirely!").decode())
    config = _config(project, [{"url": receiver.url, "name": "ops", "secret_env": "HOOK_SECRET"}])
    add_developments(Store(config.database), ["webhook:ops"], ["Gipfel abgesagt"])
    report = deliver(config, drain=False)
    assert report.failed == 1 and report.sent == 0
    assert [r.status for r in receiver.requests] == [401]


def test_500s_and_429_retry_after_then_each_development_exactly_once(
    project: Project, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _signed_ops(project, receiver, monkeypatch)
    store = Store(config.database)
    titles = [f"Neue Entwicklung {i}" for i in range(5)]
    add_developments(store, ["webhook:ops"], titles)
    receiver.plan = [500, 500, 503, (429, {"Retry-After": "1"})]

    deliver_until(config, lambda: len(receiver.unique_accepted()) == 5)

    statuses = [r.status for r in receiver.requests]
    assert statuses[:4] == [500, 500, 503, 429]
    assert statuses[4:] == [204] * 5
    # Exactly once each (nothing accepted twice), all five titles, in creation order.
    accepted = receiver.accepted
    assert Counter(r.msg_id for r in accepted).most_common(1)[0][1] == 1
    assert [r.json()["development"]["title"] for r in accepted] == titles
    # Retry-After honoured: the attempt after the 429 came at least 1 s later.
    after_429 = receiver.requests[4].at - receiver.requests[3].at
    assert after_429 >= 0.95
    # The retried body is byte-identical (only the timestamp/signature headers differ).
    first = receiver.requests[0]
    retried = next(r for r in accepted if r.msg_id == first.msg_id)
    assert retried.body == first.body
    rows = {r.idempotency_key: r for r in Outbox(store).list()}
    assert rows[first.msg_id].attempts == 5 and rows[first.msg_id].status == "sent"
    attempts = Outbox(store).attempts(rows[first.msg_id].id)
    assert [a.outcome for a in attempts] == ["failed"] * 4 + ["sent"]
    assert [a.status_code for a in attempts] == [500, 500, 503, 429, 204]


def test_rows_whose_lease_ran_out_while_they_waited_are_sent_once(
    project: Project, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass claims a batch with one lease and sends its rows one after another; behind a slow
    receiver the later rows' lease runs out before their turn, and another pass (``monitor alerts
    deliver`` beside the daemon, another node) claims and sends them. The first pass must then
    leave them alone."""
    config = _signed_ops(project, receiver, monkeypatch)  # lease 5 s
    store = Store(config.database)
    titles = ["Gipfel verschoben", "Tomahawk-Entscheidung vertagt", "Selenskyj reist ab"]
    add_developments(store, ["webhook:ops"], titles)
    outbox = Outbox(store)
    t0 = utcnow()
    stalled = outbox.claim(["webhook:ops"], [], lease=5.0, limit=100, now=t0)  # the slow pass's batch
    assert len(stalled) == 3

    async def main() -> tuple[DeliveryRunReport, DeliveryRunReport]:
        async with Monitor(config) as monitor:
            # 6 s later the lease has run out: a second pass takes the rows over and sends them ...
            second = await monitor.deliverer.run_once(now=t0 + timedelta(seconds=6), drain=True)
            # ... then the first pass gets to its batch.
            first = DeliveryRunReport()
            await monitor.deliverer.send_claimed(stalled, first)
            return first, second

    first, second = anyio.run(main)

    assert second.claimed == 3 and second.sent == 3
    assert first.sent == 0 and first.superseded == 3 and first.failed == 0
    assert Counter(r.msg_id for r in receiver.accepted) == Counter(
        {r.idempotency_key: 1 for r in outbox.list()}
    )
    assert [r.json()["development"]["title"] for r in receiver.accepted] == titles
    for row in outbox.list():
        assert row.status == "sent" and row.attempts == 2
        assert [a.outcome for a in outbox.attempts(row.id)] == ["superseded", "sent"]


def test_the_rows_waiting_behind_a_send_keep_its_lease(project: Project) -> None:
    """Renewing the row about to be sent renews those waiting behind it: if the worker dies during
    the send, they fall due together and are sent again in their order (not the later rows first)."""
    config = _config(project, [{"url": "http://127.0.0.1:9/hook", "name": "ops"}])
    store = Store(config.database)
    add_developments(store, ["webhook:ops"], ["Gipfel verschoben", "Gipfel abgesagt", "Gipfel neu"])
    outbox = Outbox(store)
    t0 = utcnow()
    claimed = outbox.claim(["webhook:ops"], [], lease=5.0, limit=100, now=t0)
    assert outbox.renew(claimed[1], lease=5.0, now=t0 + timedelta(seconds=3), waiting=claimed[2:])
    due = {r.id: r.next_attempt_at for r in outbox.list()}
    assert due[claimed[0].id] == t0 + timedelta(seconds=5)
    assert due[claimed[1].id] == due[claimed[2].id] == t0 + timedelta(seconds=8)


def test_an_outcome_is_recorded_only_by_the_claim_that_holds_the_row(
    project: Project, receiver: WebhookReceiver
) -> None:
    """The attempt count is the claim's fencing token: a claim that was taken over can neither
    overwrite the newer claim's outcome nor give the row back."""
    config = _config(project, [{"url": receiver.url, "name": "ops"}])
    store = Store(config.database)
    add_developments(store, ["webhook:ops"], ["Gipfel verschoben", "Gipfel abgesagt"])
    outbox = Outbox(store)
    t0 = utcnow()
    old = outbox.claim(["webhook:ops"], [], lease=5.0, limit=100, now=t0)
    new = outbox.claim(["webhook:ops"], [], lease=5.0, limit=100, now=t0 + timedelta(seconds=6))
    assert [c.id for c in old] == [c.id for c in new]
    outbox.finish(new[0], "sent")
    outbox.finish(old[0], "failed", error="timeout", retry_at=t0)  # the stale claim's late answer
    outbox.release(old[1:], t0)  # the stale claim gives back what it did not try
    rows = {r.id: r for r in outbox.list()}
    assert rows[new[0].id].status == "sent"
    assert rows[new[1].id].status == "sending" and rows[new[1].id].attempts == 2
    outbox.finish(new[1], "sent")
    assert {r.status for r in outbox.list()} == {"sent"}
    assert len(receiver.requests) == 0  # nothing was sent over the wire here


def test_retry_after_counts_from_the_answer(
    project: Project, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver that takes 1.5 s to answer "Retry-After: 30" means 30 s from its answer."""
    config = _signed_ops(project, receiver, monkeypatch)
    store = Store(config.database)
    add_developments(store, ["webhook:ops"], ["Gipfel verschoben"])
    receiver.plan = [(429, {"Retry-After": "30"}, 1.5)]
    started = utcnow()
    report = deliver(config, drain=False)
    assert report.failed == 1 and [r.status for r in receiver.requests] == [429]
    (row,) = Outbox(store).list()
    assert row.status == "pending"
    assert row.next_attempt_at >= started + timedelta(seconds=31.5)


def test_dead_after_max_attempts_listed_and_retried_from_the_cli(
    project: Project, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _signed_ops(project, receiver, monkeypatch)
    project.write(
        {
            "feeds": [],
            "stories": [STORY],
            "alerts": {
                "webhooks": [{"url": receiver.url, "name": "ops", "secret_env": "HOOK_SECRET"}],
                "retry": {**FAST_RETRY, "max_attempts": 3},
            },
        }
    )
    config = load_config(project.config_path)
    store = Store(config.database)
    add_developments(store, ["webhook:ops"], ["Sanktionen verhängt"])
    receiver.plan = [500] * 3
    deliver_until(config, lambda: Outbox(store).counts().get("dead", 0) == 1)
    assert len(receiver.requests) == 3 and not receiver.accepted

    listed = project.cli("alerts", "list", "--dead", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = listed.json()
    assert len(rows) == 1 and rows[0]["status"] == "dead" and rows[0]["attempts"] == 3
    assert "500" in rows[0]["last_error"] and "too many attempts" in rows[0]["last_error"]
    assert project.cli("alerts", "list", "--pending", "--json").json() == []

    retried = project.cli("alerts", "retry", str(rows[0]["id"]))
    assert retried.exit_code == 0, retried.stderr
    sent = project.cli("alerts", "deliver", "--json")
    assert sent.exit_code == 0, sent.stderr
    assert sent.json()["sent"] == 1
    assert len(receiver.accepted) == 1
    # A sent delivery cannot be retried (exit 1), an unknown id neither.
    assert project.cli("alerts", "retry", str(rows[0]["id"])).exit_code == 1
    assert project.cli("alerts", "retry", "999").exit_code == 1


def test_alerts_list_limit_must_be_positive(project: Project, receiver: WebhookReceiver) -> None:
    config = _config(project, [{"url": receiver.url, "name": "ops"}])
    store = Store(config.database)
    add_developments(store, ["webhook:ops"], ["Gipfel abgesagt", "Sanktionen verhängt", "Treffen geplatzt"])
    listed = project.cli("alerts", "list", "--limit", "2", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert len(listed.json()) == 2
    # SQLite reads LIMIT -5 as no limit: the whole outbox was listed.
    for bad in ("-5", "0"):
        result = project.cli("alerts", "list", "--limit", bad, "--json")
        assert result.exit_code == 2, (bad, result.stdout)
        assert "--limit" in result.stderr and result.stdout == ""


def test_permanent_refusal_is_dead_at_once(project: Project, receiver: WebhookReceiver) -> None:
    config = _config(project, [{"url": receiver.url, "name": "ops"}])
    receiver.secret = None
    store = Store(config.database)
    add_developments(store, ["webhook:ops"], ["Gipfel abgesagt"])
    receiver.plan = [422]
    report = deliver(config)
    assert report.dead == 1 and len(receiver.requests) == 1
    assert "permanent" in (Outbox(store).list()[0].last_error or "")


def test_a_moved_receiver_is_named_and_not_retried_for_hours(
    project: Project, receiver: WebhookReceiver
) -> None:
    """308/301: the receiver moved for good; the error says where (the body is not posted there:
    the config decides where signed alerts go). 307: moved for now, retried."""
    config = _config(project, [{"url": receiver.url, "name": "ops"}])
    receiver.secret = None
    store = Store(config.database)
    add_developments(store, ["webhook:ops"], ["Gipfel abgesagt", "Gipfel verschoben"])
    receiver.plan = [
        (308, {"Location": "https://hooks.example.org/neu"}),
        (307, {"Location": "https://hooks.example.org/kurz"}),
    ]
    report = deliver(config, drain=False)
    assert report.dead == 1 and report.failed == 1 and len(receiver.requests) == 2
    rows = sorted(Outbox(store).list(), key=lambda r: r.id)
    assert rows[0].status == "dead"
    assert "308" in (rows[0].last_error or "") and "https://hooks.example.org/neu" in (
        rows[0].last_error or ""
    )
    assert rows[1].status == "pending" and "https://hooks.example.org/kurz" in (rows[1].last_error or "")


def test_alerts_for_a_channel_no_longer_configured_are_named_and_sent_once_it_is_back(
    project: Project, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """An unnamed webhook whose URL was corrected is a new channel: its queued alerts wait under the
    old name. The worker says so, and giving the channel that name sends them."""
    receiver.secret = None
    config = _config(project, [{"url": receiver.url, "name": "neu"}])
    store = Store(config.database)
    add_developments(store, ["webhook:3f2a9c1b"], ["Gipfel verschoben"])
    with caplog.at_level("WARNING", logger="monitor.alert.worker"):
        assert deliver(config).claimed == 0
    (warning,) = [r for r in caplog.records if "not configured" in r.getMessage()]
    assert warning.channels == "webhook:3f2a9c1b (1)"
    assert receiver.requests == []
    config = _config(project, [{"url": receiver.url, "name": "3f2a9c1b"}])
    assert deliver(config).sent == 1 and len(receiver.accepted) == 1


@pytest.mark.parametrize(
    ("zone", "now", "start"),
    [
        ("Europe/Berlin", "2026-03-01T12:00:00+00:00", "2026-02-28T23:00:00+00:00"),  # CET
        ("Europe/Berlin", "2026-07-01T23:30:00+00:00", "2026-07-01T22:00:00+00:00"),  # CEST, local 01:30
        ("UTC", "2026-07-01T23:30:00+00:00", "2026-07-01T00:00:00+00:00"),
        # The night the clocks go back (27 Oct 2024, 03:00 CEST -> 02:00 CET): at 02:30 CET the day
        # still began at midnight CEST (22:00 UTC), not at 23:00 UTC (the offset in force now).
        ("Europe/Berlin", "2024-10-27T01:30:00+00:00", "2024-10-26T22:00:00+00:00"),
        ("Europe/Berlin", "2024-10-27T23:30:00+00:00", "2024-10-27T23:00:00+00:00"),
    ],
)
def test_a_daily_digest_covers_a_local_day(
    monkeypatch: pytest.MonkeyPatch, zone: str, now: str, start: str
) -> None:
    from datetime import datetime

    from monitor.alert.worker import digest_boundary

    monkeypatch.setenv("MONITOR_TIMEZONE", zone)
    assert digest_boundary(datetime.fromisoformat(now), 86400) == datetime.fromisoformat(start)
    # An hourly digest starts on the hour, as before.
    assert digest_boundary(datetime.fromisoformat(now), 3600).minute == 0


def test_filters_min_score_and_stories(project: Project, receiver: WebhookReceiver) -> None:
    other = {**STORY, "id": "other-story", "title": "Andere Geschichte"}
    project.write(
        {
            "feeds": [],
            "stories": [STORY, other],
            "alerts": {
                "webhooks": [
                    {"url": receiver.url, "name": "important", "min_score": 0.5},
                    {"url": receiver.url, "name": "other", "stories": ["other-story"]},
                ],
                "retry": FAST_RETRY,
            },
        }
    )
    config = load_config(project.config_path)
    receiver.secret = None
    store = Store(config.database)
    channels = ["webhook:important", "webhook:other"]
    add_developments(store, channels, ["wichtig", "unwichtig"], scores=[0.9, 0.2])
    add_developments(store, channels, ["andere"], story="other-story", scores=[0.1])
    deliver(config)
    got = sorted((r.msg_id.rsplit("-", 1)[1], r.json()["development"]["title"]) for r in receiver.accepted)
    assert got == [("webhook:important", "wichtig"), ("webhook:other", "andere")]
    skipped = [r for r in Outbox(store).list() if r.status == "skipped"]
    assert len(skipped) == 4 and all((r.last_error or "").startswith("filtered") for r in skipped)


def test_digest_sends_one_message_with_everything_and_nothing_when_empty(
    project: Project, receiver: WebhookReceiver
) -> None:
    config = _config(
        project, [{"url": receiver.url, "name": "daily", "mode": "digest", "digest_every": "1s"}]
    )
    receiver.secret = None
    store = Store(config.database)
    # Nothing pending: no digest at all.
    assert deliver(config).digests == 0
    titles = ["Eins", "Zwei", "Drei"]
    add_developments(store, ["webhook:daily"], titles)
    # The digest covers what was enqueued before the last period boundary: wait for it to pass.
    wait_for_boundary = time.time() + 1.05
    wait_for(lambda: time.time() >= wait_for_boundary, 3, "the digest period to end")
    report = deliver(config)
    assert report.digests == 1 and report.sent == 1
    assert len(receiver.accepted) == 1
    body = receiver.accepted[0].json()
    assert body["event"] == "digest" and body["count"] == 3
    assert [d["title"] for d in body["developments"]] == titles
    jsonschema.validate(body, read_schema(ROOT))
    assert receiver.accepted[0].msg_id.startswith("digest-webhook:daily-")
    statuses = Counter(r.status for r in Outbox(store).list())
    assert statuses == {"digested": 3, "sent": 1}
    # Next period, nothing new: nothing sent.
    later = time.time() + 1.05
    wait_for(lambda: time.time() >= later, 3, "the next period")
    assert deliver(config).digests == 0
    assert len(receiver.requests) == 1


def test_source_down_and_back_events(project: Project, receiver: WebhookReceiver) -> None:
    config = _config(project, [{"url": receiver.url, "name": "ops"}])
    receiver.secret = None
    store = Store(config.database)
    store.create_schema()
    store.sync_feeds([("Tagesschau", "https://www.tagesschau.de/xml/rss2")])
    with store.poll_transaction("Tagesschau") as tx:
        feed_id = tx.state.id
        tx.enqueue(
            [
                {
                    "idempotency_key": f"{kind}-Tagesschau-1-webhook:ops",
                    "channel": "webhook:ops",
                    "kind": kind,
                    "feed_id": feed_id,
                    "payload": {
                        "feed": "Tagesschau",
                        "url": "https://www.tagesschau.de/xml/rss2",
                        "error": "http_error: 503",
                        "since": "2025-10-20T08:00:00Z",
                    },
                }
                for kind in ("source_down", "source_back")
            ]
        )
    deliver(config)
    bodies = [r.json() for r in receiver.accepted]
    assert [b["event"] for b in bodies] == ["source_down", "source_back"]
    schema = read_schema(ROOT)
    for b in bodies:
        jsonschema.validate(b, schema)
        assert b["feed"]["name"] == "Tagesschau" and b["feed"]["error"] == "http_error: 503"


@pytest.mark.parametrize("fmt", ["slack", "teams"])
def test_slack_and_teams_formats_escape_feed_text(
    project: Project, receiver: WebhookReceiver, fmt: str
) -> None:
    config = _config(project, [{"url": receiver.url, "name": fmt, "format": fmt}])
    receiver.secret = None
    add_developments(Store(config.database), [f"webhook:{fmt}"], ["<!channel> Gipfel <b>abgesagt</b> & mehr"])
    deliver(config)
    (req,) = receiver.accepted
    body = req.json()
    text = json.dumps(body, ensure_ascii=False)
    if fmt == "slack":
        assert "<!channel>" not in text and "&lt;!channel&gt;" in text
        assert body["blocks"][0]["type"] == "section"
    else:
        assert body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert "<!channel> Gipfel <b>abgesagt</b> & mehr" in text  # plain TextBlock, no markup
    assert req.headers["webhook-id"].endswith(f"-webhook:{fmt}")


def test_apprise_channel_through_the_outbox(project: Project, receiver: WebhookReceiver) -> None:
    """Apprise's json:// notifier posting to the local receiver: a real Apprise send."""
    receiver.secret = None
    port = receiver.url.split(":")[2].split("/")[0]
    project.write(
        {
            "feeds": [],
            "stories": [STORY],
            "alerts": {
                "apprise": [{"url": f"json://127.0.0.1:{port}/hook", "name": "chat"}],
                "retry": FAST_RETRY,
            },
        }
    )
    config = load_config(project.config_path)
    store = Store(config.database)
    add_developments(store, ["apprise:chat"], ["Selenski in Washington"])
    report = deliver(config)
    assert report.sent == 1
    (req,) = receiver.accepted
    body = req.json()
    assert "Selenski in Washington" in body["title"] and "Selenski in Washington" in body["message"]


def test_alerts_test_command_reports_each_channel(project: Project, receiver: WebhookReceiver) -> None:
    receiver.secret = None
    project.write(
        {
            "feeds": [],
            "stories": [STORY],
            "alerts": {
                "webhooks": [
                    {"url": receiver.url, "name": "ok"},
                    {"url": "http://127.0.0.1:9/x", "name": "down"},
                ]
            },
        }
    )
    result = project.cli("alerts", "test", "webhook:ok")
    assert result.exit_code == 0, result.stderr
    assert "webhook:ok: sent (204)" in result.stdout
    assert receiver.accepted[0].json()["event"] == "test"
    everything = project.cli("alerts", "test", "--json")
    assert everything.exit_code == 1
    assert {r["channel"]: r["ok"] for r in everything.json()} == {"webhook:ok": True, "webhook:down": False}
    assert project.cli("alerts", "test", "webhook:nope").exit_code == 2


def test_channel_names_are_stable_and_unknown_keys_rejected(project: Project) -> None:
    from monitor.config import ConfigError, parse_config

    a = parse_config(
        "alerts:\n  webhooks:\n    - {url: 'http://a.example/1'}\n    - {url: 'http://a.example/2'}\n"
    )
    b = parse_config(
        "alerts:\n  webhooks:\n    - {url: 'http://a.example/2'}\n    - {url: 'http://a.example/1'}\n"
    )
    assert set(a.alerts.channels()) == set(b.alerts.channels())  # order does not rename channels
    with pytest.raises(ConfigError, match=r"alerts.webhooks\[0\].sekret_env.*unknown key"):
        parse_config("alerts:\n  webhooks:\n    - {url: 'http://a.example/1', sekret_env: X}\n")
    with pytest.raises(ConfigError, match="environment variable name"):
        parse_config("alerts:\n  webhooks:\n    - {url: 'http://a.example/1', secret_env: 'whsec_abc='}\n")
    with pytest.raises(ConfigError, match="unknown stories"):
        parse_config("alerts:\n  webhooks:\n    - {url: 'http://a.example/1', stories: [nope]}\n")
