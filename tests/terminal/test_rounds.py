"""terminal.rounds: the open terminals' periodic checks answered in rounds, one call for many, and
the batched services they call (sign-in, end time, heartbeat) against PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connections
from django.test import Client
from django.utils import timezone

from accounts.session_lifetime import SIGNED_IN_AT_KEY
from audit.origin import logbook_cli_token, logbook_cli_token_as
from requests_app import services as request_services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.selectors import access_requests_expire_at
from terminal import rounds, services
from terminal.models import TerminalSession
from terminal.recorder import Heartbeat, terminal_heartbeats
from terminal.rounds import Rounds
from tests.conftest import World


def _in_thread(answer: Callable[[list[Any]], dict[Any, Any]]) -> Callable[[list[Any]], Any]:
    """Off the loop, as the real runners are, so calls arriving meanwhile queue for the next round."""

    async def run(keys: list[Any]) -> dict[Any, Any]:
        return await asyncio.to_thread(answer, keys)

    return run


class Recorded:
    """An answer that records each call's keys; optionally held until released, or failing."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[list[Any]] = []
        self.fail = fail
        self.release = threading.Event()
        self.release.set()

    def __call__(self, keys: list[Any]) -> dict[Any, Any]:
        self.calls.append(list(keys))
        self.release.wait(5)
        if self.fail is not None:
            raise self.fail
        return {key: f"answer-{key}" for key in keys if key != "left-out"}


def test_calls_made_together_are_answered_by_one_call() -> None:
    answer = Recorded()
    batch: Rounds[str, str] = Rounds("test", answer, _in_thread)

    async def main() -> list[str | None]:
        return await asyncio.gather(*(batch.ask(f"k{n % 40}") for n in range(100)), batch.ask("left-out"))

    results = asyncio.run(main())
    assert len(answer.calls) == 1
    # Each key once, in the order first asked.
    assert answer.calls[0] == [f"k{n}" for n in range(40)] + ["left-out"]
    assert results == [f"answer-k{n % 40}" for n in range(100)] + [None]


def test_calls_made_while_a_round_runs_wait_for_the_next_one() -> None:
    answer = Recorded()
    batch: Rounds[str, str] = Rounds("test", answer, _in_thread)

    async def main() -> list[str | None]:
        answer.release.clear()
        first = asyncio.ensure_future(batch.ask("a"))
        while not answer.calls:  # the first round has started and is held
            await asyncio.sleep(0.01)
        later = [asyncio.ensure_future(batch.ask(key)) for key in ("b", "c", "b")]
        await asyncio.sleep(0.05)
        answer.release.set()
        return await asyncio.gather(first, *later)

    assert asyncio.run(main()) == ["answer-a", "answer-b", "answer-c", "answer-b"]
    assert answer.calls == [["a"], ["b", "c"]]


def test_a_large_round_is_split_into_calls_of_at_most_round_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rounds, "ROUND_KEYS", 7)
    answer = Recorded()
    batch: Rounds[int, str] = Rounds("test", answer, _in_thread)

    async def main() -> list[str | None]:
        return await asyncio.gather(*(batch.ask(n) for n in range(20)))

    assert asyncio.run(main()) == [f"answer-{n}" for n in range(20)]
    assert [len(call) for call in answer.calls] == [7, 7, 6]


def test_a_failed_round_fails_each_caller_and_the_next_round_still_runs() -> None:
    answer = Recorded(fail=RuntimeError("database away"))
    batch: Rounds[str, str] = Rounds("test", answer, _in_thread)

    async def main() -> tuple[list[Any], str | None]:
        failed = await asyncio.gather(batch.ask("a"), batch.ask("b"), return_exceptions=True)
        answer.fail = None
        return failed, await batch.ask("a")

    failed, later = asyncio.run(main())
    assert [type(result) for result in failed] == [RuntimeError, RuntimeError]
    assert later == "answer-a"


def test_a_caller_that_gave_up_is_left_out_of_the_round() -> None:
    answer = Recorded()
    batch: Rounds[str, str] = Rounds("test", answer, _in_thread)

    async def main() -> str | None:
        answer.release.clear()
        first = asyncio.ensure_future(batch.ask("a"))
        while not answer.calls:
            await asyncio.sleep(0.01)
        closed = asyncio.ensure_future(batch.ask("closed"))
        kept = asyncio.ensure_future(batch.ask("kept"))
        await asyncio.sleep(0.01)
        closed.cancel()  # its terminal closed while it waited
        answer.release.set()
        await first
        return await kept

    assert asyncio.run(main()) == "answer-kept"
    assert answer.calls == [["a"], ["kept"]]


def test_each_event_loop_has_its_own_rounds() -> None:
    answer = Recorded()
    batch: Rounds[str, str] = Rounds("test", answer, _in_thread)
    assert asyncio.run(batch.ask("a")) == "answer-a"
    assert asyncio.run(batch.ask("b")) == "answer-b"
    assert answer.calls == [["a"], ["b"]]


# --- the batched services ------------------------------------------------------------------


def _session_key(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.mark.django_db
def test_sessions_signed_in_answers_each_pair_as_the_one_by_one_check(world: World) -> None:
    mine, theirs, expired, garbled = (_session_key(world.requester) for _ in range(4))
    Session.objects.filter(session_key=expired).update(expire_date=timezone.now() - timedelta(seconds=1))
    Session.objects.filter(session_key=garbled).update(session_data="not-signed:" + "A" * 64)
    hostile = "x' OR '1'='1"
    pairs = [
        (mine, world.requester.pk),
        (theirs, world.member.pk),  # a session of someone else
        (expired, world.requester.pk),
        (garbled, world.requester.pk),
        ("no-such-session", world.requester.pk),
        (hostile, world.requester.pk),
        ("", world.requester.pk),
    ]
    found = services.terminal_sessions_signed_in(pairs=pairs)
    assert found == {
        (mine, world.requester.pk): True,
        (theirs, world.member.pk): False,
        (expired, world.requester.pk): False,
        (garbled, world.requester.pk): False,
        ("no-such-session", world.requester.pk): False,
        (hostile, world.requester.pk): False,
        ("", world.requester.pk): False,
    }
    # The configured engine's own store, one session at a time, as the check was before it was batched.
    store = import_store(django_settings.SESSION_ENGINE)
    one_by_one = {
        (key, user_id): bool(key) and str(store(session_key=key).load().get(SESSION_KEY, "")) == str(user_id)
        for key, user_id in pairs
    }
    assert found == one_by_one


@pytest.mark.django_db
def test_a_session_past_its_fixed_lifetime_is_no_longer_signed_in(world: World) -> None:
    """An open terminal uses its session only at the handshake: its sign-in check sees the end."""
    fresh, old, unstamped = (_session_key(world.requester) for _ in range(3))
    for key, stamp in ((old, timezone.now() - timedelta(hours=9)), (unstamped, None)):
        session = SessionStore(session_key=key)
        if stamp is None:
            del session[SIGNED_IN_AT_KEY]  # from before the rule: stamped at its next use, not ended here
        else:
            session[SIGNED_IN_AT_KEY] = stamp.timestamp()  # the cookie's own age is not over yet
        session.save()
    me = world.requester.pk
    found = services.terminal_sessions_signed_in(pairs=[(key, me) for key in (fresh, old, unstamped)])
    assert found == {(fresh, me): True, (old, me): False, (unstamped, me): True}


@pytest.mark.django_db
def test_sessions_signed_in_is_one_query_however_many_sessions(world: World, django_assert_num_queries: Any) -> None:
    keys = [_session_key(world.requester) for _ in range(30)]
    # The session rows, and which of their people are still active: two, whatever the number.
    with django_assert_num_queries(2):
        found = services.terminal_sessions_signed_in(pairs=[(key, world.requester.pk) for key in keys])
    assert all(found.values()) and len(found) == 30


@pytest.mark.django_db
def test_sessions_signed_in_with_another_session_engine(world: World, settings: Any) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    store = import_store(settings.SESSION_ENGINE)()
    store[SESSION_KEY] = str(world.requester.pk)
    store[HASH_SESSION_KEY] = world.requester.get_session_auth_hash()  # as login() stores it
    store.create()
    found = services.terminal_sessions_signed_in(
        pairs=[(store.session_key, world.requester.pk), (store.session_key, world.member.pk)]
    )
    assert found == {(store.session_key, world.requester.pk): True, (store.session_key, world.member.pk): False}


def import_store(engine: str) -> type[SessionStore]:
    from importlib import import_module

    store: type[SessionStore] = import_module(engine).SessionStore
    return store


def _active_request(world: World) -> AccessRequest:
    access_request = request_services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="rounds"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    return AccessRequest.objects.get(pk=access_request.pk)


@pytest.mark.django_db
def test_requests_expire_at_reads_each_request_and_leaves_out_the_missing(world: World) -> None:
    active = _active_request(world)
    pending = request_services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="not yet"
    )
    assert access_requests_expire_at(pks=[active.pk, pending.pk, active.pk, 10**9]) == {
        active.pk: active.expires_at,
        pending.pk: None,
    }


@pytest.mark.django_db
def test_heartbeats_write_each_session_its_own_counts_in_one_query(
    world: World, django_assert_num_queries: Any
) -> None:
    grant = Grant.objects.get(request=_active_request(world))
    old = timezone.now() - timedelta(minutes=5)
    counted, uncounted, ended = (
        TerminalSession.objects.create(grant=grant, user=world.requester, heartbeat_at=old, bytes_in=1, bytes_out=2)
        for _ in range(3)
    )
    other = TerminalSession.objects.create(grant=grant, user=world.requester, heartbeat_at=old, bytes_in=7)
    TerminalSession.objects.filter(pk=ended.pk).update(ended_at=timezone.now())
    with django_assert_num_queries(1):
        terminal_heartbeats(
            beats=[
                Heartbeat(counted.pk, 10, 2**40),
                Heartbeat(uncounted.pk),
                Heartbeat(ended.pk, 99, 99),
            ]
        )
    rows = {row.pk: row for row in TerminalSession.objects.all()}
    assert (rows[counted.pk].bytes_in, rows[counted.pk].bytes_out) == (10, 2**40)
    assert (rows[uncounted.pk].bytes_in, rows[uncounted.pk].bytes_out) == (1, 2)
    assert rows[counted.pk].heartbeat_at > old and rows[uncounted.pk].heartbeat_at > old
    # An ended session is not brought back to life, and a session not named is not touched.
    assert (rows[ended.pk].bytes_in, rows[ended.pk].heartbeat_at) == (1, old)
    assert (rows[other.pk].bytes_in, rows[other.pk].heartbeat_at) == (7, old)


@pytest.mark.usefixtures("live_db")
def test_many_terminals_checks_go_to_the_database_in_one_round_each(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real runners (Django's database thread): 60 terminals' checks, made at once,
    are three calls in all, one of each kind, and each terminal gets its own answer."""
    access_request = _active_request(world)
    grant = Grant.objects.get(request=access_request)
    records = [TerminalSession.objects.create(grant=grant, user=world.requester) for _ in range(60)]
    keys = [_session_key(world.requester) for _ in range(59)] + ["signed-out"]
    calls: list[str] = []

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            calls.append(name)
            return real(**kwargs)

        return call

    monkeypatch.setattr(
        services, "terminal_sessions_signed_in", counted("signed-in", services.terminal_sessions_signed_in)
    )
    monkeypatch.setattr(
        rounds.recorder, "terminal_heartbeats", counted("heartbeats", rounds.recorder.terminal_heartbeats)
    )
    monkeypatch.setattr(rounds, "access_requests_expire_at", counted("expire", rounds.access_requests_expire_at))

    async def terminal(n: int) -> tuple[bool, Any]:
        signed_in, expires_at, _ = await asyncio.gather(
            rounds.session_signed_in(keys[n], world.requester.pk),
            rounds.request_expires_at(access_request.pk),
            rounds.heartbeat(Heartbeat(records[n].pk, n, 2 * n)),
        )
        return signed_in, expires_at

    async def main() -> list[tuple[bool, Any]]:
        try:
            return await asyncio.gather(*(terminal(n) for n in range(60)))
        finally:  # the database thread's connection, so the test database can be dropped
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    answers = asyncio.run(main())
    assert sorted(calls) == ["expire", "heartbeats", "signed-in"]
    assert answers == [(True, access_request.expires_at)] * 59 + [(False, access_request.expires_at)]
    assert {row.pk: row.bytes_out for row in TerminalSession.objects.all()} == {
        record.pk: 2 * n for n, record in enumerate(records)
    }


def test_a_round_carries_no_cli_sign_in_of_the_connection_that_started_it() -> None:
    """The round's task answers every open terminal in the process: what it writes is none of theirs, not
    that of the CLI proxy connection (audit.origin's mark) whose call happened to start it."""
    seen: list[int | None] = []

    def answer(keys: list[str]) -> dict[str, str]:
        seen.append(logbook_cli_token())
        return {key: key for key in keys}

    batch: Rounds[str, str] = Rounds("test", answer, _in_thread)

    async def main() -> None:
        with logbook_cli_token_as(41):
            assert await batch.ask("a") == "a"
            assert logbook_cli_token() == 41  # the connection's own mark stays

    asyncio.run(main())
    assert seen == [None]
