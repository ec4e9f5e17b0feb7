"""The wall clock set back (an NTP step, a VM restored from a snapshot) does not stop polling.

Three things were planned by the old time and waited for the clock to catch up: the stored
schedules' next fire times, the feed's last committed slot (every new slot looked done) and the
feed's "not before" bound of back-off and cache headers (every scheduled poll looked early).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
from sqlalchemy import text

from monitor import health
from monitor.config import parse_config
from monitor.pipeline import SLOT_CLOCK_SLACK, _slot_done


def test_a_last_slot_in_the_future_is_a_clock_that_went_back() -> None:
    now = datetime.now(UTC)
    assert _slot_done(now, now)  # a re-run of the committed slot
    assert _slot_done(now + timedelta(seconds=30), now)  # another node's clock a little ahead
    assert not _slot_done(now - timedelta(seconds=5), now)  # a new slot
    assert not _slot_done(now + timedelta(minutes=10), now)  # planned before the clock went back
    assert SLOT_CLOCK_SLACK < 600


def test_a_not_before_bound_beyond_any_the_policy_sets_is_no_bound() -> None:
    now = datetime.now(UTC)

    def state(after: timedelta) -> Any:
        return SimpleNamespace(next_poll_after=now + after)

    assert not health.is_due(state(timedelta(minutes=30)), now, 1.0, horizon=3600)  # a real back-off
    assert health.is_due(state(timedelta(hours=3)), now, 1.0, horizon=3600)  # set before a step back
    assert not health.is_due(state(timedelta(hours=3)), now, 1.0)  # without a horizon: as before


def test_schedules_planned_by_a_clock_that_went_back_are_planned_again(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """At start-up (``reconcile_schedules``) and, while running, when the watchdog sees the wall
    clock go back against the monotonic clock."""
    from apscheduler import AsyncScheduler, ScheduleLookupError
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore

    from monitor import scheduler as sched

    url = f"sqlite:///{tmp_path / 'monitor.sqlite3'}"
    config = parse_config(
        f"database: '{url}'\nfetch: {{interval: 30s, jitter: 0s}}\n"
        "feeds:\n  - {name: eins, url: 'https://example.org/eins.xml'}\n"
    )

    class SteppedClock:
        """time.time() goes back 600 s after the first watchdog tick; monotonic time does not."""

        def __init__(self) -> None:
            self.back = 0.0
            self.calls = 0

        def time(self) -> float:
            self.calls += 1
            if self.calls > 1:
                self.back = 600.0
            return _real_time() - self.back

        def monotonic(self) -> float:
            return _real_monotonic()

    import time as real_time_module

    _real_time, _real_monotonic = real_time_module.time, real_time_module.monotonic

    async def main() -> tuple[list[dict[str, int]], list[datetime | None]]:
        engine = sched.make_scheduler_engine(url)
        counts: list[dict[str, int]] = []
        planned: list[datetime | None] = []
        try:
            store = SQLAlchemyDataStore(engine)
            async with AsyncScheduler(
                store, sched.make_event_broker(url, engine), identity="n1"
            ) as scheduler:
                await scheduler.configure_task(
                    sched.POLL_TASK_ID, func=sched.poll_feed_job, max_running_jobs=None
                )
                counts.append(await sched.reconcile_schedules(scheduler, config))

                async def stale_plan() -> None:  # as if planned by a clock an hour ahead
                    async with engine.begin() as conn:
                        await conn.execute(
                            text("UPDATE schedules SET next_fire_time = :t"),
                            # SQLite: microseconds since the epoch (APScheduler's own encoding)
                            {"t": int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1_000_000)},
                        )

                async def next_fire() -> datetime | None:
                    try:
                        return (await scheduler.get_schedule("poll:eins")).next_fire_time
                    except ScheduleLookupError:  # between its removal and its new addition
                        return datetime.max.replace(tzinfo=UTC)

                await stale_plan()
                counts.append(await sched.reconcile_schedules(scheduler, config))  # a start-up
                planned.append(await next_fire())
                await stale_plan()
                monkeypatch.setattr(sched, "time", SteppedClock())
                with anyio.move_on_after(5):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(sched.watchdog, scheduler, 0.01, config)
                        while (when := await next_fire()) is not None and when > datetime.now(
                            UTC
                        ) + timedelta(minutes=5):
                            await anyio.sleep(0.01)
                        tg.cancel_scope.cancel()
                planned.append(await next_fire())
        finally:
            await engine.dispose()
        return counts, planned

    counts, planned = anyio.run(main)
    assert [(c["added"], c["replaced"], c["kept"]) for c in counts] == [(1, 0, 0), (0, 1, 0)]
    limit = datetime.now(UTC) + timedelta(seconds=31)
    assert all(when is not None and when <= limit for when in planned), planned
