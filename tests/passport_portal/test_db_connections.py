"""deploy/README.md sizes PostgreSQL's ``max_connections``. Django's ASGI handler (what daphne runs)
gives each request's sync part a thread of its own (asgiref's ThreadSensitiveContext: an executor per
request), and a database connection belongs to its thread: one web process holds one connection per
request in flight, however many, not a thread pool's worth (``ASGI_THREADS``), unless the connection
pool caps them (production; off here: test_db_pool.py runs it). The sizing must say so."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.http import HttpRequest, JsonResponse

from passport_portal.health import middleware
from tests.passport_portal.asgi_get import asgi_get

DEPLOY_README = Path(__file__).resolve().parents[2] / "deploy" / "README.md"
IN_FLIGHT = 24  # more than ASGI_THREADS's default (the cores + 4) on a small host


def _in_flight_connections(monkeypatch: pytest.MonkeyPatch, pids: set[int]) -> None:
    """Add to ``pids`` the PostgreSQL backends IN_FLIGHT requests, all in flight at once in one ASGI handler, used."""
    lock = threading.Lock()
    arrived = threading.Barrier(IN_FLIGHT, timeout=30)

    def page(request: HttpRequest) -> JsonResponse:  # any page that reads the database while others run
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with lock:
            pids.add(pid)
        arrived.wait()  # every request is in flight, each holding what it opened
        return JsonResponse({"status": "ok"})

    monkeypatch.setitem(middleware.ENDPOINTS, "/healthz", page)
    handler = ASGIHandler()

    async def one() -> int:
        return await asgi_get(handler, "/healthz")

    async def burst() -> list[int]:
        return await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))

    started = time.monotonic()
    assert asyncio.run(burst()) == [200] * IN_FLIGHT
    assert time.monotonic() - started < 30


def test_the_sizing_counts_a_connection_per_request_in_flight(live_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pids: set[int] = set()
    try:
        _in_flight_connections(monkeypatch, pids)
    finally:  # the requests' threads are gone; their connections would keep the test database from being dropped
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(pids)])
    assert len(pids) == IN_FLIGHT, f"{IN_FLIGHT} requests in flight held {len(pids)} connections"
    text = " ".join(DEPLOY_README.read_text().split())
    sizing = re.search(r"\*\*PostgreSQL connections\.\*\*(.*?)\*\*", text)
    assert sizing, "deploy/README.md: the PostgreSQL connections paragraph"
    assert "ASGI_THREADS" not in sizing[1], "a web process's connections are not bounded by its thread pool"
    assert "one connection per request in flight" in sizing[1]
    assert "PgBouncer" in sizing[1]
