"""The signals that ask the CLI to stop (SIGTERM, SIGHUP), on the platforms that have them.

Windows has no SIGHUP (the ``signal`` module lacks the name), and its asyncio event loops
cannot take signal handlers (``add_signal_handler`` raises NotImplementedError): there the CLI
stops on what the platform does deliver (SIGTERM, Ctrl-C), through a Python-level handler
that hands the signal to the loop.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def stop_signals() -> tuple[int, ...]:
    """SIGTERM and SIGHUP, each where this platform has it."""
    found = (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
    return tuple(signum for signum in found if signum is not None)


@contextmanager
def stop_signals_caught(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for each stop signal while the block runs; the handlers before, after it."""
    previous = {signum: signal.signal(signum, handler) for signum in stop_signals()}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


@contextmanager
def stop_signals_to_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[int], None]) -> Iterator[None]:
    """``callback(signum)`` on the loop for each stop signal while the block runs.

    The loop's own signal handlers where it has them; otherwise (Windows) a Python-level handler
    that only schedules the callback on the loop, so nothing is raised inside whatever code the
    signal interrupts (a connection's task would keep the exception and go on serving).
    """
    fallback: dict[int, Any] = {}
    added: list[int] = []
    for signum in stop_signals():
        try:
            loop.add_signal_handler(signum, callback, signum)
            added.append(signum)
        except NotImplementedError:
            fallback[signum] = signal.signal(
                signum, lambda received, _frame: loop.call_soon_threadsafe(callback, received)
            )
    try:
        yield
    finally:
        for signum in added:
            loop.remove_signal_handler(signum)
        for signum, before in fallback.items():
            signal.signal(signum, before)
