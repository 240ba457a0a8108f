"""Batched writes: concurrent callers' writes share one transaction (GroupCommit), and an item
the database refuses holds back none of its batch (each_alone_if_refused)."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.exc import DataError, IntegrityError

Item, Outcome = TypeVar("Item"), TypeVar("Outcome")
REFUSALS = (DataError, IntegrityError)  # the database refuses a value (unlike an outage: retry later)


async def each_alone_if_refused(write: Callable[[list[Item]], Awaitable[list[Outcome]]],
                                items: list[Item]) -> list[Outcome | Exception]:
    """`write(items)` in one transaction; if the database refuses it, each item in its own, so the
    refused one (its outcome: the error) holds back none of the others. Other errors (an outage)
    are raised for the whole batch."""
    try:
        return await write(items)
    except REFUSALS as error:
        if len(items) == 1:
            return [error]
    outcomes: list[Outcome | Exception] = []
    for item in items:
        try:
            outcomes += await write([item])
        except REFUSALS as error:
            outcomes.append(error)
    return outcomes


class GroupCommit(Generic[Item, Outcome]):
    """While one batch is being written, the callers that arrive queue, and their items go in the
    next batch (at most `limit`). A caller alone is written at once, with no added wait; under
    load one transaction serves many callers, so a write's fixed cost (a connection, the round
    trips of BEGIN and COMMIT, the driver's and the ORM's overhead) is paid once per batch.

    `write(items)` returns one outcome per item, an exception for an item it refuses; if it
    raises, every caller of the batch gets that error."""

    def __init__(self, write: Callable[[list[Item]], Awaitable[list[Outcome | Exception]]], limit: int = 100):
        self._write, self.limit = write, limit
        self._queue: list[tuple[Item, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def submit(self, item: Item) -> Outcome:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
            self._writer.add_done_callback(self._writer_ended)
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[Item, asyncio.Future]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:self.limit], self._queue[self.limit:]
                try:
                    outcomes = await self._write([item for item, _ in batch])
                except Exception as error:
                    outcomes = [error] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller went away; the write stands
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        finally:  # nothing awaited since the queue was found empty: a caller now starts a new writer
            self._writer = None

    def _writer_ended(self, writer: asyncio.Task) -> None:
        """A writer cancelled (the process stopping; perhaps before it ever ran) leaves no caller
        waiting forever."""
        if writer.cancelled() and self._writer in (None, writer):
            self._writer = None
            for _, future in self._queue:
                future.cancel()
            self._queue = []
