"""ssmchannel.waiting: asyncio.Event and Condition.wait_for/notify_all without a deque each, and
cancel_and_wait, which ends a task even when Python 3.11 lost its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from ssmchannel.waiting import Changes, Event, cancel_and_wait, raise_failure
from tests.ssmchannel.aio import async_test


@async_test
async def test_set_wakes_every_waiter_and_later_waits_return_at_once() -> None:
    event = Event()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    event.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert event.is_set() and await event.wait()
    event.clear()
    again = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    assert not again.done()
    event.set()
    assert await again


@async_test
async def test_a_cancelled_waiter_leaves_and_the_others_still_wake() -> None:
    event = Event()
    gone = asyncio.ensure_future(event.wait())
    stays = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    gone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    assert event._waiters is not None and len(event._waiters) == 1
    event.set()
    assert await stays
    # asyncio.wait_for around wait (as the link's receive loop does) times out and wakes alike.
    event.clear()
    try:
        await asyncio.wait_for(event.wait(), 0.01)
        raise AssertionError("should have timed out")
    except TimeoutError:
        pass
    assert not event._waiters


@async_test
async def test_changes_wait_for_rechecks_the_predicate_at_each_notify() -> None:
    changes = Changes()
    state = {"n": 0}
    waiter = asyncio.ensure_future(changes.wait_for(lambda: state["n"] >= 2))
    for n in (1, 2):
        await asyncio.sleep(0)
        assert not waiter.done()
        state["n"] = n
        changes.notify_all()
    await asyncio.wait_for(waiter, 1)
    await changes.wait_for(lambda: True)  # already true: returns without waiting


def test_an_idle_event_is_small() -> None:
    # What this module is for: asyncio.Event holds a deque (about 760 bytes) from the start.
    assert sys.getsizeof(Event()) < 100
    assert sys.getsizeof(asyncio.Event()._waiters) > 500


async def _a_loop_whose_cancel_is_lost(published: asyncio.Event, release: asyncio.Event, rounds: list[int]) -> None:
    """A loop that awaits a call through asyncio.wait_for, as terminal.live's presence loop does."""

    async def publish() -> None:
        published.set()
        await release.wait()

    while True:
        rounds.append(1)
        await asyncio.wait_for(publish(), 5)
        published.clear()
        release.clear()
        await asyncio.sleep(0.01)


@async_test
async def test_cancel_and_wait_ends_a_task_whose_first_cancel_was_lost() -> None:
    published, release, rounds = asyncio.Event(), asyncio.Event(), []
    task = asyncio.ensure_future(_a_loop_whose_cancel_is_lost(published, release, rounds))
    await published.wait()
    # In one turn: the awaited call completes and the task is cancelled. On Python 3.11 wait_for then
    # returns the result and the cancellation is lost.
    release.set()
    stopping = asyncio.ensure_future(cancel_and_wait(task))
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done, "cancel_and_wait did not return"
    assert task.cancelled()
    if sys.version_info < (3, 12):
        assert len(rounds) > 1, "the first cancel was not lost: this test no longer shows what it is for"


@async_test
async def test_cancel_and_wait_takes_tasks_that_ended_or_failed_and_leaves_the_callers_cancel_alone() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    async def forever() -> None:
        await asyncio.sleep(3600)

    failed, ended = asyncio.ensure_future(fails()), asyncio.ensure_future(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    await cancel_and_wait(failed, ended)  # nothing to cancel; the error is retrieved, not raised
    assert failed.done() and ended.done()

    stuck = asyncio.ensure_future(forever())
    waiting = asyncio.ensure_future(cancel_and_wait(stuck))
    await asyncio.sleep(0)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()
    stuck.cancel()


@async_test
async def test_a_caller_cancelled_meanwhile_still_waits_until_its_tasks_have_ended() -> None:
    ended: list[str] = []

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # its own teardown, which the caller's cancel must not cut short
            ended.append("slow")
            raise

    slow = asyncio.ensure_future(slow_to_stop())
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(cancel_and_wait(slow))
    await asyncio.sleep(0.05)
    waiting.cancel()  # e.g. an outer teardown re-cancelling this one
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()
    assert slow.done() and ended == ["slow"]


@async_test
async def test_raise_failure_raises_the_first_error_that_is_not_ordinary() -> None:
    async def fails(error: BaseException) -> None:
        raise error

    closed = asyncio.ensure_future(fails(ConnectionResetError("reset")))
    broken = asyncio.ensure_future(fails(ValueError("broken")))
    cancelled = asyncio.ensure_future(asyncio.sleep(3600))
    fine = asyncio.ensure_future(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    await cancel_and_wait(closed, broken, cancelled, fine)

    raise_failure(cancelled, fine)  # a cancelled or a finished task is no failure
    raise_failure(closed, cancelled, ordinary=(ConnectionError,))
    with pytest.raises(ValueError, match="broken"):
        raise_failure(closed, broken, ordinary=(ConnectionError,))
    with pytest.raises(ConnectionResetError):
        raise_failure(closed, broken)
