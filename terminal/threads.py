"""Running blocking calls from the terminals' async code: ORM calls on Django's shared database
thread, slow ones (storage) on threads of their own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from terminal import recorder

P = ParamSpec("P")
R = TypeVar("R")


def in_db_thread(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """An ORM call from async code: in Django's shared sync thread, with stale connections closed
    before and after, as a long-lived connection would otherwise outlive the database's timeout."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=True)


def off_loop(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """A slow call (storage) in a thread of its own, not Django's shared one; a database
    connection it opened is closed when it returns."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            recorder.upload_thread_exit()

    return sync_to_async(call, thread_sensitive=False)
