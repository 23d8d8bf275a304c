"""asyncio.Event and the part of asyncio.Condition the link uses, without their deques.

Every asyncio.Event, Condition and Queue allocates a ``collections.deque`` for its waiters
when it is made (about 760 bytes: a deque holds a block of 64 slots), waited on or not. An
open data channel kept seven of them, a browser terminal's live feed two more: a real share of
what each idle terminal costs the web process. These keep their waiters in a list made on the
first wait and dropped once they are woken, so an idle one is a few dozen bytes.

Same semantics as asyncio's, on one event loop: ``set`` / ``notify_all`` wake every task
waiting at that moment; a waiter cancelled meanwhile leaves quietly.

``cancel_and_wait`` ends tasks for certain: on Python 3.11 a cancellation can be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


class Event:
    """asyncio.Event's interface: ``set``, ``clear``, ``is_set``, ``await wait()``."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        _wake(self._waiters)
        self._waiters = None

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        if self._waiters is None:
            self._waiters = []
        await _park(self._waiters)
        return True


# How long a cancelled task gets to end before it is cancelled again.
RECANCEL_SECONDS = 0.5


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and return once every one has ended, however it ended.

    On Python 3.11, ``asyncio.wait_for`` returns the awaited call's result and drops the
    cancellation when the cancel arrives as that call completes (CPython gh-86296, fixed in 3.12
    by a new wait_for): a loop that awaits through it would run on after its cancel, and whoever
    awaited it would wait for ever. A task still running after ``RECANCEL_SECONDS`` is cancelled
    again. A cancellation of the caller itself is not swallowed: it is raised once the tasks have
    ended (so a teardown cancelled from outside still finishes its own). An error a task ended
    with is not raised here; ``raise_failure`` raises it where the caller wants it.
    """
    loop = asyncio.get_running_loop()
    pending = {task for task in tasks if not task.done()}
    cancelled = False
    while pending:
        for task in pending:
            task.cancel()
        recancel_at = loop.time() + RECANCEL_SECONDS
        while pending and (left := recancel_at - loop.time()) > 0:
            try:
                _, pending = await asyncio.wait(pending, timeout=left)
            except asyncio.CancelledError:
                cancelled = True  # our own caller: let the tasks finish ending first, then pass it on
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: an ending by an error is not reported as never retrieved
    if cancelled:
        raise asyncio.CancelledError


def raise_failure(*tasks: asyncio.Future[Any], ordinary: tuple[type[BaseException], ...] = ()) -> None:
    """Raise the error the first of ``tasks`` (all ended) ended with, unless it is one of ``ordinary``."""
    for task in tasks:
        failure = None if task.cancelled() else task.exception()
        if failure is not None and not isinstance(failure, ordinary):
            raise failure


class Changes:
    """``wait_for(predicate)`` until it holds, re-checked at each ``notify_all`` (asyncio.Condition's
    ``wait_for`` and ``notify_all``; no lock to take, as everything runs on one event loop)."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            if self._waiters is None:
                self._waiters = []
            await _park(self._waiters)

    def notify_all(self) -> None:
        waiters, self._waiters = self._waiters, None
        _wake(waiters)


async def _park(waiters: list[asyncio.Future[None]]) -> None:
    future = asyncio.get_running_loop().create_future()
    waiters.append(future)
    try:
        await future
    finally:
        # Woken waiters were handed over with their list; a cancelled one is still in it.
        if not future.done() or future.cancelled():
            with contextlib.suppress(ValueError):
                waiters.remove(future)


def _wake(waiters: list[asyncio.Future[None]] | None) -> None:
    if waiters:
        for future in waiters:
            if not future.done():
                future.set_result(None)
