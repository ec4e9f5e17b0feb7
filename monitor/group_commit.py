"""Group commit: many polls' writes in few transactions, from one task at a time.

SQLite has one writer, so the monitor funnels its writes through one thread; writing each feed's
poll in its own transaction would pay a commit (and rewrite the same index pages) per feed. Polls
queue their writes here instead; whichever poll finds no flush running writes everything queued,
in batches, until the queue is empty, and the polls that queued meanwhile go into the next batch.
``Monitor`` keeps two: one for full poll transactions and one for the health rows of polls that
brought nothing new (304).

A caller that starts many polls at once (``monitor poll``) says which it expects (``expect``): a
batch is then written once it is full, once no expected poll can still join it, or once its first
job has waited ``gather`` seconds (a feed that hangs must not hold back the others' writes, which a
stopped poll keeps): the feeds of a poll that answer within that time are written (and their items
diffed) in the same batches whichever answers first.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
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
        gather: float = 2.0,
    ) -> None:
        self._write = write
        self._limiter = limiter
        self._batch_max = batch_max
        self._failure = failure
        self._gather = gather
        self._queue: list[J] = []
        self._flushing = False
        # Writers announced by ``expect`` that have neither queued a job nor ``settle``d, and the
        # event that wakes a flush waiting for them (set when one of them does either).
        self._expected: set[Hashable] = set()
        self._changed = anyio.Event()
        self._oldest = 0.0  # when the first job still queued was queued (event loop clock)

    def expect(self, keys: Iterable[Hashable]) -> None:
        """Writers (by key) that are about to queue a job or ``settle``: a batch waits for them
        until it is full. Each must do one of the two, or every batch waits for it."""
        self._expected.update(keys)

    def settle(self, key: Hashable) -> None:
        """The writer ``key`` queues nothing (more): batches no longer wait for it."""
        if key in self._expected:
            self._expected.discard(key)
            self._changed.set()

    async def write(self, job: J, key: Hashable | None = None) -> None:
        """Queue ``job`` (from the writer ``key``, if ``expect``ed) and return once it is written."""
        if not self._queue:
            self._oldest = anyio.current_time()
        self._queue.append(job)
        if key is not None:
            self.settle(key)
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
                try:
                    await self._gathered()
                except anyio.get_cancelled_exc_class():
                    # Stopped while gathering (SIGTERM, a sibling's failure): the batch gathered
                    # so far was fetched and parsed, and without the wait it would be written by
                    # now; it still is, then the stop goes on.
                    batch = self._take()
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(self._write, batch, limiter=self._limiter)
                    raise
                batch = self._take()
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

    def _take(self) -> list[J]:
        """The next batch, off the queue."""
        size = self._batch_max or len(self._queue)
        batch, self._queue = self._queue[:size], self._queue[size:]
        self._oldest = anyio.current_time()  # the jobs left queued during this batch's write
        return batch

    async def _gathered(self) -> None:
        """Until the queue holds a full batch, no expected writer is left to join it, or the first
        job queued has waited ``gather`` seconds."""
        deadline = self._oldest + self._gather
        while self._expected and (self._batch_max is None or len(self._queue) < self._batch_max):
            self._changed = anyio.Event()
            with anyio.move_on_after(deadline - anyio.current_time()) as waited:
                await self._changed.wait()
            if waited.cancelled_caught:
                return
