"""SIGKILL of a real daemon (``monitor run``) in the middle of delivering, at the two points that
matter, through the worker's test hook ``MONITOR_TEST_CRASH_AT`` (see monitor/alert/worker.py):

- ``after_send``: the receiver has the alert, the database does not know yet. After a restart the
  alert is sent again with the same webhook-id, so a receiver that deduplicates by it sees each
  development exactly once; nothing is lost.
- ``before_send``: the delivery is claimed but not sent. After a restart (once the claim's lease
  has expired) it is sent, exactly once.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from typing import Any

import pytest

from monitor.config import load_config
from monitor.store import Store
from monitor.store.outbox import Outbox
from tests.alert_helpers import SECRET, WebhookReceiver, add_developments, env_without_crash_hook, wait_for
from tests.conftest import STORY, Project

TITLES = ["Gipfel verschoben", "Tomahawk-Lieferung genehmigt", "Selenski trifft Trump"]


def _setup(project: Project, receiver: WebhookReceiver) -> tuple[Store, list[int]]:
    project.write(
        {
            "feeds": [],
            "stories": [STORY],
            "alerts": {
                "webhooks": [{"url": receiver.url, "name": "ops", "secret_env": "HOOK_SECRET"}],
                "deliver_every": "0.2s",
                "retry": {"backoff": "0.1s", "jitter": 0.0, "lease": "2s"},
            },
        }
    )
    config = load_config(project.config_path)
    store = Store(config.database)
    return store, add_developments(store, ["webhook:ops"], TITLES)


def _run_until_killed(project: Project, crash_at: str) -> None:
    proc = project.spawn("run", env={"HOOK_SECRET": SECRET, "MONITOR_TEST_CRASH_AT": crash_at})
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(
            f"the daemon did not reach the crash point; stderr:\n{proc.stderr.read()}"
        ) from None
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL, stderr
    assert "test hook: killing the process" in stderr


def _restart_until_all_sent(project: Project, store: Store) -> str:
    env = {**env_without_crash_hook(), "HOOK_SECRET": SECRET}
    proc = project.spawn("run", env=env)
    try:
        wait_for(lambda: Outbox(store).counts() == {"sent": len(TITLES)}, 60, "every delivery to be sent")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    return stderr


@pytest.fixture
def receiver() -> Any:
    with WebhookReceiver() as r:
        yield r


def test_kill_between_sent_and_marked_sent(project: Project, receiver: WebhookReceiver) -> None:
    store, _ = _setup(project, receiver)
    _run_until_killed(project, "after_send:2")

    # Two alerts reached the receiver; the second was never marked sent.
    first_run = [r.msg_id for r in receiver.accepted]
    assert len(first_run) == 2
    by_key = {r.idempotency_key: r for r in Outbox(store).list()}
    assert by_key[first_run[0]].status == "sent"
    assert by_key[first_run[1]].status == "sending"

    _restart_until_all_sent(project, store)

    raw = Counter(r.msg_id for r in receiver.accepted)
    # The receiver, deduplicating by webhook-id, has each development exactly once ...
    unique = receiver.unique_accepted()
    assert sorted(r.json()["development"]["title"] for r in unique.values()) == sorted(TITLES)
    # ... and the only repeat is the one alert whose outcome the killed process never recorded,
    # resent with the same id and the same body.
    assert raw == Counter({**dict.fromkeys(unique, 1), first_run[1]: 2})
    bodies = [r.body for r in receiver.accepted if r.msg_id == first_run[1]]
    assert bodies[0] == bodies[1]
    # The interrupted attempt stays visible as one with an unknown outcome.
    row = next(r for r in Outbox(store).list() if r.idempotency_key == first_run[1])
    assert row.unknown_outcomes == 1 and row.attempts == 2


def test_kill_after_claim_before_sending(project: Project, receiver: WebhookReceiver) -> None:
    store, _ = _setup(project, receiver)
    _run_until_killed(project, "before_send:2")

    assert len(receiver.accepted) == 1
    assert Counter(r.status for r in Outbox(store).list()) == {"sent": 1, "sending": 2}

    _restart_until_all_sent(project, store)

    # Nothing lost and nothing repeated, even without deduplication.
    titles = [r.json()["development"]["title"] for r in receiver.accepted]
    assert titles == TITLES
    assert all(r.status == 204 for r in receiver.requests)
