"""How services reach the workers' tasks without importing them (tasks import the services).

The workers register their tasks here by name when Django starts (``WorkersConfig.ready``);
a service asks for one by that name. Chosen over ``celery.current_app.send_task`` because
that always goes through the broker (the demo's eager mode and the unit tests' recorded
``.delay`` would be bypassed) and sends an unknown name silently into a queue nobody reads;
here an unknown name fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)


class Dispatchable(Protocol):
    """A Celery task, as far as dispatch needs it."""

    def delay(self, *args: Any) -> Any: ...


_tasks: dict[str, Dispatchable] = {}

# What a task is sent: ids (one, or a list of them) and short strings, never model objects.
TaskArg = int | str | list[int]


def task_register(name: str, task: Dispatchable) -> None:
    _tasks[name] = task


def task_send(name: str, *args: TaskArg) -> None:
    """Queue the task ``name`` now."""
    try:
        task = _tasks[name]
    except KeyError:
        raise LookupError(f"no task {name!r} is registered (is the workers app installed?)") from None
    task.delay(*args)


@dataclass
class DispatchWatch:
    """What could not be handed to the broker while it was watched (task names, in order)."""

    deferred: list[str] = field(default_factory=list)


_watch: ContextVar[DispatchWatch | None] = ContextVar("passport_dispatch_watch", default=None)


@contextmanager
def dispatch_watch() -> Iterator[DispatchWatch]:
    """Collect the sends deferred inside this block, so a page or API answer can say the work is queued."""
    watch = DispatchWatch()
    token = _watch.set(watch)
    try:
        yield watch
    finally:
        _watch.reset(token)


def task_send_deferrable(name: str, *args: TaskArg) -> bool:
    """Queue ``name`` now; when the broker cannot be reached, log it and return False instead of raising.

    Only for work a periodic sweep finds again from the database (requests_app's
    ``stuck_work``: approved requests, grants to remove): the state change that asked for it is
    already committed, and the sweep hands the work out once the broker is back.
    """
    try:
        task_send(name, *args)
    except (BrokerError, ConnectionError, TimeoutError) as exc:
        logger.warning("broker unreachable: %s%r left for the sweep (%s)", name, args, exc)
        watch = _watch.get()
        if watch is not None:
            watch.deferred.append(name)
        return False
    return True


def task_send_on_commit(name: str, *args: TaskArg) -> None:
    """Queue the task ``name`` once the current transaction commits (at once outside one).

    Runs after the commit, so a broker that is down must not turn a saved change into an
    error: the send is deferred to the sweeps (``task_send_deferrable``).
    """
    transaction.on_commit(lambda: task_send_deferrable(name, *args))
