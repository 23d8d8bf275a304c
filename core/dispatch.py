"""How services reach the workers' tasks without importing them (tasks import the services).

The workers register their tasks here by name when Django starts (``WorkersConfig.ready``);
a service asks for one by that name. Chosen over ``celery.current_app.send_task`` because
that always goes through the broker (the demo's eager mode and the unit tests' recorded
``.delay`` would be bypassed) and sends an unknown name silently into a queue nobody reads;
here an unknown name fails at once.
"""

from __future__ import annotations

from typing import Any, Protocol

from django.db import transaction


class Dispatchable(Protocol):
    """A Celery task, as far as dispatch needs it."""

    def delay(self, *args: Any) -> Any: ...


_tasks: dict[str, Dispatchable] = {}


def task_register(name: str, task: Dispatchable) -> None:
    _tasks[name] = task


def task_send(name: str, *args: int | str) -> None:
    """Queue the task ``name`` now (ids and short strings only, never model objects)."""
    try:
        task = _tasks[name]
    except KeyError:
        raise LookupError(f"no task {name!r} is registered (is the workers app installed?)") from None
    task.delay(*args)


def task_send_on_commit(name: str, *args: int | str) -> None:
    """Queue the task ``name`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: task_send(name, *args))
