"""A web process with the connection pool on, for tests/passport_portal/test_db_pool.py: run as
``python -m tests.passport_portal.db_pool_probe SCENARIO`` with PASSPORT_DB_POOL_MAX_SIZE and a
DATABASE_URL naming the test database and an ``application_name`` of its own; prints one JSON object.

It imports ``passport_portal.asgi`` as daphne does and sends requests through Django's ASGI handler
(its HTTP side), or runs the Channels and terminal paths to the database, many at once, each holding
its connection a while: what PostgreSQL sees is counted in ``pg_stat_activity`` by that name."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "passport_portal.settings")

from asgiref.sync import ThreadSensitiveContext
from channels.db import database_sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.http import HttpRequest, JsonResponse

import passport_portal.asgi  # noqa: F401  # as daphne starts a web process
from passport_portal.health import middleware
from passport_portal.health.checks import database_check
from terminal.threads import in_db_thread, off_loop

APP = connection.settings_dict["OPTIONS"]["application_name"]
HOLD_SECONDS = 0.3


class Seen:
    """The backends the work used, and the most of this process's backends PostgreSQL had at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pids: set[int] = set()
        self.most = 0
        self.holding = 0

    def hold(self, release: threading.Event | None = None) -> None:
        """On this thread's connection: note its backend and how many this process has, then keep it a while."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), count(*) FROM pg_stat_activity WHERE application_name = %s", [APP])
            pid, backends = cursor.fetchone()
        with self.lock:
            self.pids.add(pid)
            self.most = max(self.most, backends)
            self.holding += 1
        if release is None:
            time.sleep(HOLD_SECONDS)
        else:
            release.wait(30)

    def as_json(self) -> dict[str, Any]:
        return {"pids": len(self.pids), "most": self.most}


def pool_stats() -> dict[str, int]:
    stats = connection.pool.get_stats()
    return {key: stats.get(key, 0) for key in ("pool_size", "pool_available", "requests_waiting")}


def serve(view: Callable[[HttpRequest], None]) -> Callable[[], Any]:
    """A request to ``view`` through Django's ASGI handler; returns its coroutine function (status code)."""

    def page(request: HttpRequest) -> JsonResponse:
        view(request)
        return JsonResponse({"status": "ok"})

    middleware.ENDPOINTS["/healthz"] = page
    handler = ASGIHandler()

    async def one() -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/healthz",
            "raw_path": b"/healthz",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8001),
        }
        sent: list[dict[str, Any]] = []
        received = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive() -> dict[str, Any]:
            try:
                return next(received)
            except StopIteration:
                await asyncio.sleep(3600)
                return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await handler(scope, receive, send)
        return next(m["status"] for m in sent if m["type"] == "http.response.start")

    return one


def requests_capped(count: int) -> dict[str, Any]:
    """``count`` requests in flight at once, each holding its connection HOLD_SECONDS."""
    seen = Seen()
    one = serve(lambda request: seen.hold())

    async def burst() -> list[int]:
        return await asyncio.gather(*(one() for _ in range(count)))

    started = time.monotonic()
    statuses = asyncio.run(burst())
    return {"statuses": statuses, "seconds": time.monotonic() - started, **seen.as_json(), "after": pool_stats()}


def request_times_out() -> dict[str, Any]:
    """The pool's every connection held by a request: one more waits the pool's timeout and fails with a
    server error, logged; once they are handed back, the next request is served."""
    seen = Seen()
    release = threading.Event()
    logged: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(f"{record.getMessage()} {record.exc_info[1] if record.exc_info else ''}")

    logging.getLogger("django.request").addHandler(Keep())
    one = serve(lambda request: seen.hold(None if request.GET.get("quick") else release))
    size = connection.pool.max_size

    async def run() -> dict[str, Any]:
        holders = [asyncio.ensure_future(one()) for _ in range(size)]
        while seen.holding < size:
            await asyncio.sleep(0.05)
        started = time.monotonic()
        refused = await one()
        waited = time.monotonic() - started
        release.set()
        held = await asyncio.gather(*holders)
        return {"held": held, "refused": refused, "waited": waited, "after_release": await one()}

    result = asyncio.run(run())
    return {**result, "logged": logged, **seen.as_json(), "after": pool_stats()}


def async_paths(count: int) -> dict[str, Any]:
    """The WebSockets' ways to the database, ``count`` at once each: Channels' database_sync_to_async (in
    contexts of their own, so in threads of their own), the terminal's in_db_thread and off_loop."""
    seen = Seen()

    async def channels_call() -> None:
        async with ThreadSensitiveContext():
            await database_sync_to_async(seen.hold)()

    async def terminal_db_call() -> None:
        async with ThreadSensitiveContext():
            await in_db_thread(seen.hold)()

    async def run() -> None:
        await asyncio.gather(*(channels_call() for _ in range(count)))
        await asyncio.gather(*(terminal_db_call() for _ in range(count)))
        await asyncio.gather(*(off_loop(seen.hold)() for _ in range(count)))

    started = time.monotonic()
    asyncio.run(run())
    return {"seconds": time.monotonic() - started, **seen.as_json(), "after": pool_stats()}


def readiness_leaves_no_timeout() -> dict[str, Any]:
    """/readyz's database check, then the connection it handed back: the check's statement and lock
    timeouts must not come with it to the next request."""
    database_check()
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
        timeouts = list(cursor.fetchone())
    connection.close()
    return {"timeouts": timeouts, "after": pool_stats()}


def main() -> None:
    scenario, *args = sys.argv[1:]
    # What the start (its checks, the broker warmed) left on this thread, which serves no request.
    started = {"holds": connection.connection is not None, **pool_stats()}
    if scenario == "requests":
        result = requests_capped(int(args[0]))
    elif scenario == "timeout":
        result = request_times_out()
    elif scenario == "async":
        result = async_paths(int(args[0]))
    else:
        result = readiness_leaves_no_timeout()
    print(json.dumps({"started": started, **result}))


if __name__ == "__main__":
    main()
