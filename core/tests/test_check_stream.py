"""How `Hub._check_each`'s check slots share a stream of items (what `check_all` feeds them).

An async generator cannot be resumed while it waits, so one slot reads it at a time; a slot
that finds nobody inside the stream must read at once, never queue behind slots that waited
earlier (a queue of that kind makes every later read pay a future and a pass of the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from hub_core.hub import CheckItem, _taker

pytestmark = pytest.mark.anyio

Taken = tuple[int, CheckItem] | None


def _item(number: int) -> CheckItem:
    return ("acme", {"api_key": f"key-{number}"})


async def _gated(gate: asyncio.Event, count: int) -> AsyncIterator[CheckItem]:
    await gate.wait()  # the first read waits, as one waits for a lease from the store
    for number in range(count):
        yield _item(number)


async def test_slots_share_a_stream_each_item_once_with_its_index() -> None:
    gate = asyncio.Event()
    take = _taker(_gated(gate, 6))
    slots = [asyncio.ensure_future(take()) for _ in range(4)]
    await asyncio.sleep(0)
    gate.set()
    first = await asyncio.gather(*slots)
    rest = [await take(), await take(), await take()]

    taken = [t for t in first + rest if t is not None]
    assert sorted(taken) == [(number, _item(number)) for number in range(6)]
    assert rest[-1] is None  # the stream is over, and says so to every slot that asks
    assert await take() is None


def _finish(read: Generator[Any, None, Taken]) -> Taken:
    """Run *read* on, here and now: it must end without waiting (without a turn of the loop)."""
    with pytest.raises(StopIteration) as done:
        read.send(None)
    taken: Taken = done.value.value
    return taken


async def test_a_read_after_a_wait_does_not_queue_behind_the_slots_that_waited() -> None:
    gate = asyncio.Event()
    take = _taker(_gated(gate, 5))
    # Driven by hand, so nothing else runs between its steps.
    reader = take().__await__()
    reader.send(None)  # inside the stream, waiting at the gate
    queued = [asyncio.ensure_future(take()) for _ in range(3)]
    await asyncio.sleep(0)  # waiting their turn
    gate.set()
    assert _finish(reader) == (0, _item(0))

    # The first slot that waited is woken, not yet run: a read now finds nobody inside the
    # stream and reads at once.
    assert _finish(take().__await__()) == (1, _item(1))
    rest = await asyncio.gather(*queued)
    assert sorted(rest, key=lambda taken: -1 if taken is None else taken[0]) == [
        (n, _item(n)) for n in (2, 3, 4)
    ]


async def test_a_slot_cancelled_while_waiting_leaves_the_others_their_turn() -> None:
    gate = asyncio.Event()
    take = _taker(_gated(gate, 3))
    reader = asyncio.ensure_future(take())
    await asyncio.sleep(0)
    cancelled, waiting = asyncio.ensure_future(take()), asyncio.ensure_future(take())
    await asyncio.sleep(0)
    cancelled.cancel()
    gate.set()

    assert await reader == (0, _item(0))
    assert await asyncio.wait_for(waiting, 5) == (1, _item(1))
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_a_slot_woken_then_cancelled_passes_its_turn_on() -> None:
    gate = asyncio.Event()
    take = _taker(_gated(gate, 3))
    reader = take().__await__()
    reader.send(None)
    woken, waiting = asyncio.ensure_future(take()), asyncio.ensure_future(take())
    await asyncio.sleep(0)
    gate.set()
    assert _finish(reader) == (0, _item(0))  # its turn handed to the first waiting slot...
    woken.cancel()  # ...which is cancelled before it runs

    assert await asyncio.wait_for(waiting, 5) == (1, _item(1))
    with pytest.raises(asyncio.CancelledError):
        await woken
