"""The outbox on PostgreSQL: two workers (separate processes' worth of engines, in two threads)
draining one outbox at the same time send every delivery exactly once (claims with
FOR UPDATE SKIP LOCKED and a guarded update). Skips with a reason when PostgreSQL is absent."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from monitor.alert import Deliverer
from monitor.config import load_config
from monitor.store import Store
from monitor.store.outbox import Outbox
from tests.alert_helpers import WebhookReceiver, add_developments
from tests.clusterkit import fresh_pg_database
from tests.conftest import STORY, Project

pytestmark = pytest.mark.postgres


@pytest.fixture
def alerts_pg_url() -> Iterator[str]:
    with fresh_pg_database("sm_alerts") as url:
        yield url


def test_two_workers_on_postgres_send_each_delivery_once(project: Project, alerts_pg_url: str) -> None:
    with WebhookReceiver(secret=None) as receiver:
        project.write(
            {
                "database": alerts_pg_url,
                "feeds": [],
                "stories": [STORY],
                "alerts": {"webhooks": [{"url": receiver.url, "name": "ops"}], "batch": 5},
            }
        )
        config = load_config(project.config_path)
        store = Store(config.database)
        titles = [f"Entwicklung {i}" for i in range(30)]
        add_developments(store, ["webhook:ops"], titles)
        reports: list[Any] = []

        def worker() -> None:
            async def main() -> None:
                async with Deliverer(config, Store(config.database), limiter=anyio.CapacityLimiter(4)) as d:
                    reports.append(await d.run_once(drain=True))

            anyio.run(main)

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(reports) == 2
        counts = Counter(r.msg_id for r in receiver.requests)
        assert len(counts) == 30 and set(counts.values()) == {1}
        assert sum(r.sent for r in reports) == 30
        assert Outbox(store).counts() == {"sent": 30}
