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
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse

import passport_portal.asgi  # noqa: F401  # as daphne starts a web process
from accounts.models import User
from audit.exports import LogbookExport
from audit.selectors import LogbookFilters
from passport_portal.health import middleware
from passport_portal.health.checks import CheckFailed, database_check
from terminal.threads import in_db_thread, off_loop
from tests.passport_portal.asgi_get import asgi_get

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
        return await ask(handler, "/healthz")

    return one


class SlowClient:
    """A client that stops reading after the first part of the body (its socket's buffer full)
    until ``reads`` is set; ``stalled`` is set once the server is left waiting on it."""

    def __init__(self) -> None:
        self.stalled = asyncio.Event()
        self.reads = asyncio.Event()


async def ask(handler: ASGIHandler, path: str, slow_client: SlowClient | None = None) -> int:
    """One GET of ``path`` through ``handler``; its status code."""

    async def sent(message: dict[str, Any]) -> None:
        if slow_client is not None and message["type"] == "http.response.body" and message.get("more_body"):
            slow_client.stalled.set()
            await slow_client.reads.wait()

    return await asgi_get(handler, path, sent=sent)


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


def read_people(request: HttpRequest) -> JsonResponse:
    """A page that reads the database, as every signed-in one does."""
    list(User.objects.values_list("pk", flat=True)[:1])
    return JsonResponse({"status": "ok"})


def slow_download(body: Callable[[HttpRequest], StreamingHttpResponse]) -> dict[str, Any]:
    """A streamed response (``body``, on /healthz) read slowly by its client, while the process serves
    another request that reads the database (/metrics): with the pool, that one must not wait for
    the download's last byte."""
    middleware.ENDPOINTS["/healthz"] = body
    middleware.ENDPOINTS["/metrics"] = read_people
    handler = ASGIHandler()
    slow_client = SlowClient()

    async def run() -> dict[str, Any]:
        downloading = asyncio.ensure_future(ask(handler, "/healthz", slow_client))
        await asyncio.wait_for(slow_client.stalled.wait(), 30)
        second = await ask(handler, "/metrics")
        slow_client.reads.set()
        return {"download": await downloading, "second": second}

    return {**asyncio.run(run()), "after": pool_stats()}


def cast_like(request: HttpRequest) -> HttpResponseBase:
    """As recording_cast: the view reads the database, then streams the body a block at a time."""
    list(User.objects.values_list("pk", flat=True)[:1])

    async def body() -> Any:
        for _ in range(3):
            yield b"x" * 65536

    return StreamingHttpResponse(body(), content_type="application/x-asciicast")


def logbook_export(reviewer_pk: int) -> Callable[[HttpRequest], HttpResponseBase]:
    """As the Logbook export under ASGI: a batch of one entry read for each part of the body."""

    def view(request: HttpRequest) -> HttpResponseBase:
        reviewer = User.objects.get(pk=reviewer_pk)
        export = LogbookExport(user=reviewer, filters=LogbookFilters(), fmt="jsonl", batch_size=1)
        return StreamingHttpResponse(export.async_chunks(), content_type="application/x-ndjson")

    return view


def readiness_while_busy() -> dict[str, Any]:
    """/readyz's database check while requests (threads) hold every connection of the pool."""
    size = connection.pool.max_size
    holding = threading.Barrier(size + 1)
    release = threading.Event()

    def busy_request() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        holding.wait()
        release.wait(30)
        connection.close()

    threads = [threading.Thread(target=busy_request) for _ in range(size)]
    for thread in threads:
        thread.start()
    holding.wait()
    started = time.monotonic()
    try:
        outcome = database_check().status
    except CheckFailed as exc:
        outcome = f"failed: {exc}"
    waited = time.monotonic() - started
    release.set()
    for thread in threads:
        thread.join()
    return {"outcome": outcome, "waited": waited, "after": pool_stats()}


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
    elif scenario == "stream":
        result = slow_download(cast_like)
    elif scenario == "export":
        result = slow_download(logbook_export(int(args[0])))
    elif scenario == "readiness-busy":
        result = readiness_while_busy()
    else:
        result = readiness_leaves_no_timeout()
    print(json.dumps({"started": started, **result}))


if __name__ == "__main__":
    main()
