"""GroupCommit: concurrent callers' items written in shared batches, each caller given its own outcome."""

import asyncio

import pytest

from services.ledger.group_commit import GroupCommit


class Writer:
    """A write function that records its batches and takes a moment, as a transaction does."""

    def __init__(self):
        self.batches: list[list[int]] = []

    async def write(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(items)
        await asyncio.sleep(0.01)
        if -1 in items:
            raise ConnectionError("database down")
        return [ValueError(f"item {item} refused") if item == 13 else item * 10 for item in items]


async def test_callers_arriving_during_a_write_share_the_next_batch():
    writer = Writer()
    commit = GroupCommit(writer.write, limit=100)
    outcomes = await asyncio.gather(*(commit.submit(item) for item in range(1, 251) if item != 13))
    assert outcomes == [item * 10 for item in range(1, 251) if item != 13]
    # all arrived before the first write began: at most 100 a batch, in the order they came
    assert [len(batch) for batch in writer.batches] == [100, 100, 49]
    assert [item for batch in writer.batches for item in batch] == [i for i in range(1, 251) if i != 13]


async def test_a_refused_item_fails_only_its_caller_and_a_failed_write_fails_its_whole_batch():
    writer = Writer()
    commit = GroupCommit(writer.write)
    first = asyncio.create_task(commit.submit(1))
    await asyncio.sleep(0)
    results = await asyncio.gather(commit.submit(12), commit.submit(13), commit.submit(14),
                                   return_exceptions=True)
    assert await first == 10
    assert results[0] == 120 and results[2] == 140
    assert isinstance(results[1], ValueError) and str(results[1]) == "item 13 refused"
    down = await asyncio.gather(commit.submit(-1), commit.submit(5), return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in down)
    assert await commit.submit(6) == 60  # the next batch is written again


async def test_a_caller_that_goes_away_leaves_its_write_and_the_others_standing():
    writer = Writer()
    commit = GroupCommit(writer.write)
    first = asyncio.create_task(commit.submit(1))
    await asyncio.sleep(0)
    leaving, staying = asyncio.create_task(commit.submit(2)), asyncio.create_task(commit.submit(3))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await first == 10 and await staying == 30
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert writer.batches == [[1], [2, 3]]


async def test_a_writer_cancelled_before_it_ran_does_not_stall_later_callers():
    writer = Writer()
    commit = GroupCommit(writer.write)
    first = asyncio.create_task(commit.submit(1))
    await asyncio.sleep(0)  # the writer task exists, and has not run yet
    commit._writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(commit.submit(2), 5) == 20
