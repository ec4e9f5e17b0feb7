"""Group commit: many polls' writes in few transactions, from one task at a time.

SQLite has one writer, so the monitor funnels its writes through one thread; writing each feed's
poll in its own transaction would pay a commit (and rewrite the same index pages) per feed. Polls
queue their writes here instead; whichever poll finds no flush running writes everything queued,
in batches, until the queue is empty, and the polls that queued meanwhile go into the next batch.
``Monitor`` keeps two: one for full poll transactions and one for the health rows of polls that
brought nothing new (304).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import anyio
from anyio import CapacityLimiter


class QueuedWrite(Protocol):
    """A job's outcome slots. ``write`` (in its thread) sets each job's outcome (``finished``
    becomes true, or ``error`` for a job that failed alone); ``done`` is set by the group commit."""

    done: anyio.Event
    error: BaseException | None

    @property
    def finished(self) -> bool: ...


J = TypeVar("J", bound=QueuedWrite)


class GroupCommit(Generic[J]):
    """``await commits.write(job)`` returns once ``job`` is written (or raises its error).

    ``write(batch)`` runs in a worker thread under ``limiter`` and sets each job's outcome;
    ``batch_max`` bounds a batch (None: everything queued). If a batch fails as a whole (the
    database, outside any one job's writes) or the flushing task is cancelled (shutdown), it is not
    known whether that batch committed: its jobs without an outcome, and the jobs still queued,
    get ``failure(exc)`` as their error. None of them is written twice; jobs whose outcome the
    thread had set keep it (the thread runs to its end even when the task is cancelled).
    """

    def __init__(
        self,
        write: Callable[[list[J]], None],
        *,
        limiter: CapacityLimiter,
        batch_max: int | None,
        failure: Callable[[BaseException], BaseException],
    ) -> None:
        self._write = write
        self._limiter = limiter
        self._batch_max = batch_max
        self._failure = failure
        self._queue: list[J] = []
        self._flushing = False

    async def write(self, job: J) -> None:
        self._queue.append(job)
        if not self._flushing:
            await self._flush()
        await job.done.wait()
        if job.error is not None:
            raise job.error

    async def _flush(self) -> None:
        self._flushing = True
        batch: list[J] = []
        try:
            while self._queue:
                size = self._batch_max or len(self._queue)
                batch, self._queue = self._queue[:size], self._queue[size:]
                await anyio.to_thread.run_sync(self._write, batch, limiter=self._limiter)
                for job in batch:
                    job.done.set()
                batch = []
        except BaseException as exc:
            error = self._failure(exc)
            for job in batch + self._queue:
                if not job.finished and job.error is None:
                    job.error = error
                job.done.set()
            self._queue = []
            raise
        finally:
            self._flushing = False
