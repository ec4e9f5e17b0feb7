"""The daemon's delivery schedule: one APScheduler schedule ``deliver`` that runs the outbox
worker every ``alerts.deliver_every`` through the running Monitor (``Monitor.deliver_pending``).

``max_running_jobs=1`` is cluster-wide in APScheduler 4: one delivery pass at a time across all
nodes, which keeps per-channel order; the outbox's claims make overlapping passes safe anyway.
"""

from __future__ import annotations

import math

from apscheduler import AsyncScheduler, ConflictPolicy
from apscheduler._enums import CoalescePolicy
from apscheduler.triggers.interval import IntervalTrigger

from monitor.alert.worker import deliver_job
from monitor.config import Config

DELIVER_TASK_ID = "monitor.deliver"
DELIVER_SCHEDULE_ID = "deliver"


async def schedule_delivery(scheduler: AsyncScheduler, config: Config) -> bool:
    """Add (or replace) the delivery schedule; remove it when no alert channel is configured."""
    if not config.alerts.channels():
        if any(s.id == DELIVER_SCHEDULE_ID for s in await scheduler.get_schedules()):
            await scheduler.remove_schedule(DELIVER_SCHEDULE_ID)
        return False
    await scheduler.configure_task(DELIVER_TASK_ID, func=deliver_job, max_running_jobs=1)
    every = config.alerts.deliver_every
    whole = math.floor(every)
    await scheduler.add_schedule(
        DELIVER_TASK_ID,
        IntervalTrigger(seconds=whole, microseconds=round((every - whole) * 1e6)),
        id=DELIVER_SCHEDULE_ID,
        coalesce=CoalescePolicy.latest,
        conflict_policy=ConflictPolicy.replace,
    )
    return True
