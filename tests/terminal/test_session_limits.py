"""How many sessions one person may have open at once: per grant and overall, browser and CLI alike.

Above the cap a terminal is refused before anything is started on the instance (no certificate, no
StartSession): the page gets a ``closed`` frame with the reason and close code 4429, the CLI a
``refused`` frame and 4429, and the Logbook a ``terminal.refused``. Only live sessions count: one
ended, or one whose web process stopped writing its heartbeat, does not.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.utils import timezone

from accounts.models import User
from audit.models import LogbookEntry, RefusalTally
from audit.refusals import logbook_refusals_flush
from audit.throttle import window_start_for
from requests_app.models import Grant
from terminal import frames, services, slots
from terminal.models import Client, SessionSlot, TerminalSession
from tests.accounts.test_membership_races import wait_for_a_lock_waiter
from tests.conftest import World
from tests.terminal.helpers import Screen, communicator, session_cookie
from tests.terminal.proxy.test_refusals import assert_refused, attempt, bearer, token_for
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.usefixtures("live_db")


def open_session(grant: Grant, *, heartbeat_age: float = 0, ended: bool = False, client: str = Client.BROWSER) -> None:
    """A TerminalSession row as a running terminal leaves it (heartbeat ``heartbeat_age`` seconds old)."""
    now = timezone.now()
    TerminalSession.objects.create(
        user=grant.request.requester,
        grant=grant,
        client=client,
        ssm_session_id="s-existing",
        heartbeat_at=now - timedelta(seconds=heartbeat_age),
        ended_at=now if ended else None,
    )


def browser_attempt(world: World, grant: Grant) -> Screen:
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    cookie = session_cookie(world.requester)

    async def run() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        connected, _ = await comm.connect(timeout=10)
        screen = Screen(comm)
        assert connected
        await screen.until(lambda s: s.closed_code is not None, timeout=15, what="close")
        return screen

    try:
        return async_to_sync(run)()
    except AssertionError as exc:
        # Not refused: the terminal went on to start a session. Say so plainly.
        raise AssertionError(f"the terminal was not refused: {exc}") from None


def test_a_browser_terminal_above_the_per_grant_cap_is_refused_before_starting(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 2
    grant = make_active_grant(world)
    open_session(grant)
    open_session(grant, client=Client.CLI)

    screen = browser_attempt(world, grant)

    assert screen.closed_code == frames.CLOSE_TOO_MANY_SESSIONS == 4429
    closed = screen.message("closed")
    assert closed is not None and "at most 2" in closed["reason"], screen.messages
    refused = LogbookEntry.objects.get(action="terminal.refused", request_id=grant.request_id)
    assert refused.actor_id == world.requester.pk
    assert refused.detail["reason"] == "too many open sessions"
    assert refused.detail["open_on_instance"] == 2 and refused.detail["max_per_instance"] == 2
    # Nothing expensive was started: no certificate, no Session Manager session, no slot left behind.
    assert not LogbookEntry.objects.filter(action__in=["session.started", "certificate.issued"]).exists()
    assert not SessionSlot.objects.exists()


def test_refusals_at_the_cap_are_written_once_per_person_and_grant_and_counted(
    world: World, settings: Any, time_machine: Any
) -> None:
    # A page reloading, a script retrying: one entry a window, with what the first one saw, and a count.
    # At the start of a refusal window (audit.refusals), so that the repeats below fall in the same one.
    window = settings.PASSPORT_REFUSAL_WINDOW_SECONDS
    time_machine.move_to(window_start_for(timezone.now(), window) + timedelta(seconds=window + 1), tick=True)
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 1
    grant, other = make_active_grant(world), make_active_grant(world, world.db)
    open_session(grant)
    open_session(other)
    for _ in range(3):
        assert browser_attempt(world, grant).closed_code == 4429
    assert_refused(attempt(grant, bearer(token_for(world.requester))), 4429, "at most 1")
    assert browser_attempt(world, other).closed_code == 4429

    [refused] = LogbookEntry.objects.filter(action="terminal.refused", request_id=grant.request_id)
    assert refused.detail["reason"] == "too many open sessions" and refused.detail["client"] == "browser"
    assert refused.actor_id == world.requester.pk and refused.detail["open_on_instance"] == 1
    assert LogbookEntry.objects.filter(action="terminal.refused", request_id=other.request_id).count() == 1
    counts = dict(RefusalTally.objects.filter(action="terminal.refused").values_list("reason", "count"))
    assert counts == {refused.detail["refusal_key"]: 4, f"too many open sessions:{other.pk}": 1}
    assert logbook_refusals_flush(now=timezone.now() + timedelta(days=2)) == 1
    summary = LogbookEntry.objects.get(action="terminal.refused", detail__summary=True)
    assert summary.detail["total"] == 5


def test_the_per_person_cap_counts_every_grant(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_PERSON = 2
    web, db = make_active_grant(world), make_active_grant(world, world.db)
    open_session(db)
    open_session(db)

    screen = browser_attempt(world, web)

    assert screen.closed_code == 4429
    closed = screen.message("closed")
    assert closed is not None and "at most 2" in closed["reason"], screen.messages
    assert LogbookEntry.objects.get(action="terminal.refused").detail["open_overall"] == 2


def test_only_live_sessions_count(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 2
    grant = make_active_grant(world)
    open_session(grant)
    open_session(grant, ended=True)
    open_session(grant, heartbeat_age=settings.PASSPORT_RECORDING_STALE_SECONDS + 5)  # the sweep's to seal
    # Someone else's sessions are theirs.
    TerminalSession.objects.create(user=world.member, grant=grant, heartbeat_at=timezone.now())

    slot = slots.session_slot_claim(user=world.requester, grant=grant, client=Client.BROWSER)
    # The slot counts while its session opens: the next one is over the cap.
    with pytest.raises(slots.SessionLimitReached):
        slots.session_slot_claim(user=world.requester, grant=grant, client=Client.BROWSER)
    # The slot becomes the session's row, in one transaction: still two.
    services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id="s-new", recording_path="", slot_id=slot
    )
    assert not SessionSlot.objects.exists()
    with pytest.raises(slots.SessionLimitReached):
        slots.session_slot_claim(user=world.requester, grant=grant, client=Client.BROWSER)
    # A slot left by a web process that died while opening stops counting.
    TerminalSession.objects.filter(ssm_session_id="s-new").update(ended_at=timezone.now())
    SessionSlot.objects.create(user=world.requester, grant=grant)
    SessionSlot.objects.update(created_at=timezone.now() - timedelta(seconds=slots.OPENING_SECONDS + 1))
    assert slots.session_slot_claim(user=world.requester, grant=grant, client=Client.BROWSER)


def test_two_opening_at_once_cannot_both_take_the_last_slot(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 3
    grant = make_active_grant(world)
    open_session(grant)
    open_session(grant)
    contenders = 8
    barrier = threading.Barrier(contenders)
    claimed: list[int] = []
    refused: list[str] = []

    def claim() -> None:
        try:
            barrier.wait(timeout=10)
            claimed.append(slots.session_slot_claim(user=world.requester, grant=grant, client=Client.BROWSER))
        except slots.SessionLimitReached as exc:
            refused.append(exc.reason)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(claimed) == 1 and len(refused) == contenders - 1, (claimed, refused)
    assert SessionSlot.objects.count() == 1


def test_a_cli_connection_above_the_cap_is_refused(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 1
    grant = make_active_grant(world)
    open_session(grant)

    assert_refused(attempt(grant, bearer(token_for(world.requester))), 4429, "at most 1")
    refused = LogbookEntry.objects.get(action="terminal.refused")
    assert refused.detail["client"] == "cli" and refused.detail["reason"] == "too many open sessions"
    assert not SessionSlot.objects.exists()


def _slot(world: World, grant: Grant, *, age: float) -> int:
    slot = SessionSlot.objects.create(user=world.requester, grant=grant)
    SessionSlot.objects.filter(pk=slot.pk).update(created_at=timezone.now() - timedelta(seconds=age))
    return slot.pk


def test_a_slot_held_by_a_live_connection_keeps_counting_while_it_is_touched(world: World, settings: Any) -> None:
    # ssh -N -L holds a connection (a Session Manager session, a login) but never a shell.
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 1
    grant = make_active_grant(world)
    held = _slot(world, grant, age=slots.OPENING_SECONDS + 60)
    assert slots.sessions_open(user=world.requester, grant=grant) == (0, 0)  # not touched: stopped counting

    slots.session_slot_touch(slot_id=held)

    assert slots.sessions_open(user=world.requester, grant=grant) == (1, 1)
    with pytest.raises(slots.SessionLimitReached):
        slots.session_slot_claim(user=world.requester, grant=grant, client=Client.CLI)


def test_a_slot_that_stopped_counting_does_not_let_its_session_past_the_cap(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 1
    grant = make_active_grant(world)
    late = _slot(world, grant, age=slots.OPENING_SECONDS + 1)  # an opening slower than the slots last
    open_session(grant)  # meanwhile another session took the one place

    with pytest.raises(slots.SessionLimitReached):
        services.terminal_session_start(
            user=world.requester, grant=grant, ssm_session_id="s-late", recording_path="r", slot_id=late
        )
    assert TerminalSession.objects.filter(ssm_session_id="s-late").count() == 0


# --- one person, several users (accounts.permissions.same_person) -----------------------------


def _twin(world: World, username: str = "alice-saml") -> User:
    """Another user of the requester's person: the same email, other case and spaces."""
    return User.objects.create_user(username=username, email=f"  {world.requester.email.upper()} ")


def test_the_per_person_cap_counts_every_user_of_the_person(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_PERSON = 2
    twin = _twin(world)
    grant = make_active_grant(world)
    TerminalSession.objects.create(user=twin, grant=grant, heartbeat_at=timezone.now())  # a live row of the twin
    SessionSlot.objects.create(user=twin, grant=grant)  # and one opening

    assert slots.sessions_open(user=world.requester, grant=grant) == (2, 2)
    with pytest.raises(slots.SessionLimitReached) as refused:
        slots.session_slot_claim(user=world.requester, grant=grant, client=Client.BROWSER)
    assert refused.value.detail["open_overall"] == 2
    # Their sessions, too, count the requester's: the twin is at the cap as well.
    with pytest.raises(slots.SessionLimitReached):
        slots.session_slot_claim(user=twin, grant=grant, client=Client.CLI)
    # Someone with another email, or with none, is another person.
    assert slots.sessions_open(user=world.member, grant=grant) == (0, 0)
    nobody = User.objects.create_user(username="no-email-1", email="")
    TerminalSession.objects.create(user=nobody, grant=grant, heartbeat_at=timezone.now())
    other_nobody = User.objects.create_user(username="no-email-2", email="  ")
    assert slots.sessions_open(user=other_nobody, grant=grant) == (0, 0)
    assert slots.sessions_open(user=nobody, grant=grant) == (1, 1)


def test_two_users_of_one_person_opening_at_once_cannot_both_take_the_last_place(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_PERSON = 3
    twin = _twin(world)
    grant = make_active_grant(world)
    open_session(grant)
    TerminalSession.objects.create(user=twin, grant=grant, heartbeat_at=timezone.now())
    contenders = 8
    barrier = threading.Barrier(contenders)
    claimed: list[int] = []
    refused: list[str] = []

    def claim(user: User) -> None:
        try:
            barrier.wait(timeout=10)
            claimed.append(slots.session_slot_claim(user=user, grant=grant, client=Client.BROWSER))
        except slots.SessionLimitReached as exc:
            refused.append(exc.reason)
        finally:
            connection.close()

    users = [world.requester, twin] * (contenders // 2)
    threads = [threading.Thread(target=claim, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(claimed) == 1 and len(refused) == contenders - 1, (claimed, refused)
    assert SessionSlot.objects.count() == 1


# --- a CLI connection's slot: the connection's as long as it is open ---------------------------


def _cli_row(world: World, grant: Grant, slot_id: int, name: str) -> TerminalSession:
    return services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id=name, recording_path="r", client=Client.CLI, slot_id=slot_id
    )


def test_a_cli_connection_counts_once_without_a_live_shell_and_once_per_live_shell(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 2
    grant = make_active_grant(world)
    connection_slot = slots.session_slot_claim(user=world.requester, grant=grant, client=Client.CLI)
    assert slots.sessions_open(user=world.requester, grant=grant) == (1, 1)  # only ssh -N -L, say

    first = _cli_row(world, grant, connection_slot, "s-first")
    assert first.connection_slot == connection_slot and SessionSlot.objects.filter(pk=connection_slot).exists()
    assert slots.sessions_open(user=world.requester, grant=grant) == (1, 1)  # the shell counts in the slot's stead
    second = _cli_row(world, grant, connection_slot, "s-second")  # a second shell at once counts on its own
    assert slots.sessions_open(user=world.requester, grant=grant) == (2, 2)
    with pytest.raises(slots.SessionLimitReached):
        _cli_row(world, grant, connection_slot, "s-third")

    for row in (first, second):
        TerminalSession.objects.filter(pk=row.pk).update(ended_at=timezone.now())
    # Both shells ended, the connection is still open (forwards, or idle): it still counts, once.
    assert slots.sessions_open(user=world.requester, grant=grant) == (1, 1)
    _cli_row(world, grant, connection_slot, "s-later")  # a later command takes the connection's place
    assert slots.sessions_open(user=world.requester, grant=grant) == (1, 1)

    slots.session_slot_release(slot_id=connection_slot)  # the connection closed
    TerminalSession.objects.update(ended_at=timezone.now())
    assert slots.sessions_open(user=world.requester, grant=grant) == (0, 0)


def test_a_cli_connection_slot_past_its_time_is_checked_again_and_then_counts(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 1
    grant = make_active_grant(world)
    late = _slot(world, grant, age=slots.OPENING_SECONDS + 1)  # its touches failed for a while
    open_session(grant)  # meanwhile another session took the one place
    with pytest.raises(slots.SessionLimitReached):
        _cli_row(world, grant, late, "s-late")
    TerminalSession.objects.update(ended_at=timezone.now())

    row = _cli_row(world, grant, late, "s-late")
    TerminalSession.objects.filter(pk=row.pk).update(ended_at=timezone.now())
    assert slots.sessions_open(user=world.requester, grant=grant) == (1, 1)  # touched: the connection counts again


def test_a_cli_shell_ending_while_a_claim_counts_is_counted_once(world: World, settings: Any) -> None:
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 2
    grant = make_active_grant(world)
    connection_slot = slots.session_slot_claim(user=world.requester, grant=grant, client=Client.CLI)
    shell = _cli_row(world, grant, connection_slot, "s-shell")  # the connection counts once, as its shell
    counted, go_on = threading.Event(), threading.Event()

    def pause_after_reading_rows(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        """The claim stops after its first read of the session rows (the only one, once rows and slots are one)."""
        result = execute(sql, params, many, context)
        if not counted.is_set() and sql.lstrip("(").startswith("SELECT") and 'FROM "terminal_terminalsession"' in sql:
            counted.set()
            go_on.wait(20)
        return result

    outcome: list[object] = []

    def claim() -> None:
        try:
            with connection.execute_wrapper(pause_after_reading_rows):
                outcome.append(slots.session_slot_claim(user=world.requester, grant=grant, client=Client.BROWSER))
        except slots.SessionLimitReached as exc:
            outcome.append(exc.reason)
        finally:
            connection.close()

    claimer = threading.Thread(target=claim)
    claimer.start()
    try:
        assert counted.wait(20), outcome
        # The shell ends (its connection stays open, with forwards) while the claim counts, under the lock.
        services.terminal_session_end(
            session=shell, reason="The shell ended.", bytes_in=0, bytes_out=0, recording_sha256=""
        )
    finally:
        go_on.set()
        claimer.join(30)
    # One session open before and after (the connection, as its shell, then as its slot): one more fits.
    assert len(outcome) == 1 and isinstance(outcome[0], int), outcome
    assert not LogbookEntry.objects.filter(action="terminal.refused").exists()


def test_a_browser_terminal_and_a_cli_shell_of_one_person_start_at_once(world: World) -> None:
    # The browser's row takes its slot's place without the person's lock; the CLI's row is written
    # under it. Neither may wait for the other in a circle (PostgreSQL would abort one).
    grant = make_active_grant(world)
    browser_slot = slots.session_slot_claim(user=world.requester, grant=grant, client=Client.BROWSER)
    cli_slot = slots.session_slot_claim(user=world.requester, grant=grant, client=Client.CLI)
    logged, go_on = threading.Event(), threading.Event()

    def pause_after_logbook(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        """The browser's start stops after its terminal.started entry, holding the Logbook's head."""
        result = execute(sql, params, many, context)
        if not logged.is_set() and "INSERT INTO audit_logbookentry" in sql:
            logged.set()
            go_on.wait(20)
        return result

    errors: list[BaseException] = []

    def start(client: str, slot_id: int) -> None:
        paused = connection.execute_wrapper(pause_after_logbook) if client == Client.BROWSER else nullcontext()
        try:
            with paused:
                services.terminal_session_start(
                    user=world.requester, grant=grant, ssm_session_id=f"s-{client}", recording_path="", client=client,
                    slot_id=slot_id,
                )  # fmt: skip
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    browser = threading.Thread(target=start, args=(Client.BROWSER, browser_slot))
    cli = threading.Thread(target=start, args=(Client.CLI, cli_slot))
    browser.start()
    try:
        assert logged.wait(20), errors
        cli.start()
        wait_for_a_lock_waiter()  # the CLI's start waits for the Logbook's head
    finally:
        go_on.set()
        browser.join(30)
        if cli.ident is not None:
            cli.join(30)
    assert not errors, errors
    assert sorted(TerminalSession.objects.values_list("client", flat=True)) == [Client.BROWSER, Client.CLI]
