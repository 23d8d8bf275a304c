"""A change of people (a site admin's membership edit or deactivation, a SAML sign-in's groups, a
plain save of an inactive person) racing a transition of one access request, each on its own
PostgreSQL connection, as two processes would.

Each test forces one interleaving: a patched step holds one side at a chosen point (its row locks
taken, its transaction open) while the other runs until PostgreSQL shows it waiting for a lock,
then lets the first go. Both sides are legitimate and must both succeed, one after the other: no
deadlock (PostgreSQL would abort one of them), and the outcome as if they had run in that order.
The lock order they keep is written down in ``requests_app.services.lifecycle``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from accounts.approval_policies import approvals_counted
from accounts.models import ApiToken, ApprovalPolicy, Membership, User
from accounts.saml.config import identity_provider
from accounts.saml.services import saml_person_sign_in
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, EndReason, RequestStatus
from requests_app.services.lifecycle import decide, ending, extend
from tests.accounts.test_saml import CAROL, idps  # noqa: F401  (the IdPs, autouse)
from tests.audit.admin_forms import form_data, superuser_client
from tests.audit.test_admin_trail_accounts import ACCOUNTS, _row
from tests.conftest import PROVISIONING_TASKS, World
from tests.factories import make_active_request, make_membership, make_user
from workers import tasks

# What a test started, let go and waited for at its end even when it failed half-way (a side left
# running would hold its locks over the next test's flush).
_started: list[tuple[threading.Event | None, threading.Thread | None]] = []


@pytest.fixture(autouse=True)
def committed(transactional_db: None) -> Iterator[None]:
    yield
    for release, _ in _started:
        if release is not None:
            release.set()
    for _, thread in _started:
        if thread is not None:
            thread.join(30)
    _started.clear()
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")


@pytest.fixture(autouse=True)
def environment(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PASSPORT_IAM_CHECK = False
    for name in PROVISIONING_TASKS:
        monkeypatch.setattr(getattr(tasks, name), "delay", lambda *args: None)


class Side(threading.Thread):
    """One side of the race, on its own database connection; keeps what it returned or raised."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.error: BaseException | None = None
        self.result: Any = None
        _started.append((None, self))

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            connections.close_all()

    def finish(self) -> Any:
        self.join(30)
        assert not self.is_alive(), "still running"
        assert self.error is None, repr(self.error)
        return self.result


class Hold:
    """Wraps ``original``: the side that calls it stops there (after it, or before it) until released."""

    def __init__(self, original: Callable[..., Any], *, after: bool = False) -> None:
        self.original, self.after = original, after
        self.reached, self.release = threading.Event(), threading.Event()
        _started.append((self.release, None))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.original(*args, **kwargs) if self.after else None
        self.reached.set()
        self.release.wait(20)
        return result if self.after else self.original(*args, **kwargs)

    def wait(self, side: Side) -> None:
        assert self.reached.wait(20), repr(side.error)


def wait_for_a_lock_waiter(timeout: float = 10, *, unless_done: Side | None = None) -> None:
    """Until another connection to this database waits for a lock (seen in pg_stat_activity), or
    ``unless_done`` has finished without waiting for one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if unless_done is not None and not unless_done.is_alive():
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.05)
    raise AssertionError("nobody waited for a lock")


def admin_post(world: World, user: User, **changes: str | None) -> Callable[[], int]:
    """The account's admin page as the site admin would post it, with ``user``'s membership row
    changed (a field set to None is left out: an unticked box)."""
    client, _root = superuser_client()
    url = f"{ACCOUNTS}{world.prod.pk}/change/"
    data = form_data(client, url)
    row = _row(data, "memberships", Membership.objects.get(user=user, account=world.prod).pk)
    for field, value in changes.items():
        if value is None:
            data.pop(f"{row}-{field}", None)
        else:
            data[f"{row}-{field}"] = [value]
    return lambda: client.post(url, data).status_code


def admin_deactivates(user: User) -> Callable[[], int]:
    """The site admin's post of ``user``'s own admin page with "Active" unticked."""
    client, _root = superuser_client()
    url = f"/admin/accounts/user/{user.pk}/change/"
    data = form_data(client, url, is_active=None)
    return lambda: client.post(url, data).status_code


def admin_stops_approving(world: World, user: User, how: str) -> Callable[[], int]:
    """The site admin's post that stops ``user`` approving for prod, ``how``: "approving taken away" (the
    membership's box unticked), "membership removed" (the row deleted) or "deactivated" (the user's page)."""
    if how == "deactivated":
        return admin_deactivates(user)
    if how == "membership removed":
        return admin_post(world, user, DELETE="on")
    assert how == "approving taken away", how
    return admin_post(world, user, can_approve=None)


def extension_held(access_request: AccessRequest, actor: User, monkeypatch: pytest.MonkeyPatch) -> tuple[Side, Hold]:
    """An extension by an hour, held after its UPDATE of the request row (locked), before its Logbook entry."""
    access_request.refresh_from_db()
    hold = Hold(extend.logbook_append)
    monkeypatch.setattr(extend, "logbook_append", hold)
    side = Side(
        lambda: services.access_request_extend(access_request=access_request, actor=actor, by=timedelta(hours=1))
    )
    side.start()
    hold.wait(side)
    return side, hold


def assert_extended_then_revoked(access_request: AccessRequest, via: str) -> None:
    access_request.refresh_from_db()
    assert access_request.extended_by == timedelta(hours=1)
    assert (access_request.status, access_request.end_reason) == (RequestStatus.COMPLETING, EndReason.REVOKED)
    extended = LogbookEntry.objects.get(action="request.extended", request_id=access_request.pk)
    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=access_request.pk)
    assert extended.pk < revoked.pk and revoked.detail["via"] == via
    assert logbook_verify().intact


# --- a role lowered while the request moves ----------------------------------------------


def test_lowering_the_role_in_the_admin_while_the_request_is_being_extended(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    post = admin_post(world, world.requester, role="observer")
    extending, hold = extension_held(alice, world.requester, monkeypatch)

    admin = Side(post)
    admin.start()
    wait_for_a_lock_waiter()  # the admin's revocation waits for the extension's row lock
    hold.release.set()

    extending.finish()
    assert admin.finish() == 302
    # The extension came first, then the admin lowered Alice to Observer: her access ends.
    assert Membership.objects.get(user=world.requester, account=world.prod).role == "observer"
    assert_extended_then_revoked(alice, "admin")


def test_lowering_the_role_in_the_admin_while_the_request_is_being_completed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    post = admin_post(world, world.requester, role="observer")
    # The completion is held just after its UPDATE of the request row (it holds that row's lock).
    hold = Hold(ending._grants_end)
    monkeypatch.setattr(ending, "_grants_end", hold)
    completing = Side(lambda: services.access_request_complete(access_request=alice, actor=world.requester))
    completing.start()
    hold.wait(completing)

    admin = Side(post)
    admin.start()
    wait_for_a_lock_waiter()
    hold.release.set()

    completing.finish()
    assert admin.finish() == 302
    assert Membership.objects.get(user=world.requester, account=world.prod).role == "observer"
    alice.refresh_from_db()
    # Completed by Alice first: nothing was left for the admin's change to revoke.
    assert (alice.status, alice.end_reason, alice.ended_by) == (
        RequestStatus.COMPLETING,
        EndReason.COMPLETED,
        world.requester,
    )
    assert not LogbookEntry.objects.filter(action="request.revoked").exists()
    assert LogbookEntry.objects.filter(action="admin.changed", detail__model="accounts.membership").exists()
    assert logbook_verify().intact


def test_a_sign_in_lowering_the_role_while_the_request_is_being_extended(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp = identity_provider("customer")
    assert idp is not None

    def sign_in(groups: list[str]) -> User:
        attributes = {"email": CAROL.email, "first_name": "Carol", "last_name": "Customer", "groups": groups}
        return saml_person_sign_in(idp=idp, name_id=CAROL.name_id, attributes=attributes)

    carol = sign_in(["passport:111111111111:admin"])
    access_request = make_active_request(carol, world.prod, world.web)
    extending, hold = extension_held(access_request, carol, monkeypatch)

    signing_in = Side(lambda: sign_in(["passport:111111111111:observer"]))
    signing_in.start()
    wait_for_a_lock_waiter()  # the sign-in's revocation waits for the extension's row lock
    hold.release.set()

    extending.finish()
    assert signing_in.finish() == carol
    assert Membership.objects.get(user=carol, account=world.prod).role == "observer"
    assert_extended_then_revoked(access_request, "saml")
    synced = LogbookEntry.objects.filter(action="auth.saml_synced", actor=carol).latest("id")
    assert synced.pk < LogbookEntry.objects.get(action="request.revoked").pk  # the sync, then what it ended


@pytest.mark.parametrize("how", ["admin", "save"])
def test_deactivating_a_person_while_their_request_is_being_extended(
    world: World, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    # A CLI sign-in of hers: deactivation revokes it (a Logbook entry) before it ends her access.
    ApiToken.objects.create(
        user=world.requester, name="laptop", token_hash="0" * 64, expires_at=timezone.now() + timedelta(hours=1)
    )

    def saved_inactive() -> int:
        with transaction.atomic():
            person = User.objects.get(pk=world.requester.pk)
            person.is_active = False
            person.save()
        return 302

    deactivate = admin_deactivates(world.requester) if how == "admin" else saved_inactive
    extending, hold = extension_held(alice, world.requester, monkeypatch)
    deactivating = Side(deactivate)
    deactivating.start()
    wait_for_a_lock_waiter()
    hold.release.set()

    extending.finish()
    assert deactivating.finish() == 302
    assert not User.objects.get(pk=world.requester.pk).is_active
    assert not ApiToken.objects.filter(user=world.requester).exists()
    assert LogbookEntry.objects.filter(action="cli.token_revoked").count() == 1
    assert_extended_then_revoked(alice, "deactivated")


# --- an approval counted while the admin takes approving away ------------------------------


def two_approvals_one_given(world: World) -> tuple[AccessRequest, User]:
    """Alice's request on an account that asks for two approvals, approved once by Xavier."""
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    xavier = make_user("xavier", first_name="Xavier", last_name="Approver")
    make_membership(xavier, world.prod, "observer", can_approve=True)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy"
    )
    services.access_request_approve(access_request=access_request, approver=xavier)
    return access_request, xavier


@pytest.mark.parametrize("how", ["approving taken away", "deactivated"])
def test_an_approval_the_admin_discounted_does_not_make_the_quorum(
    world: World, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    access_request, xavier = two_approvals_one_given(world)
    post = admin_stops_approving(world, xavier, how)
    # The admin's transaction is held open just after it discounted Xavier's approval.
    hold = Hold(services.access_request_approvals_discounted, after=True)
    monkeypatch.setattr(services, "access_request_approvals_discounted", hold)
    admin = Side(post)
    admin.start()
    hold.wait(admin)

    carol = Side(lambda: services.access_request_approve(access_request=access_request, approver=world.approver))
    carol.start()
    wait_for_a_lock_waiter()  # Carol's count waits for the admin's change of Xavier
    hold.release.set()

    assert admin.finish() == 302
    carol.finish()
    discounted = LogbookEntry.objects.get(action="request.approval_discounted", request_id=access_request.pk)
    assert (discounted.detail["approvals"], discounted.detail["required"]) == (0, 2)
    recorded = LogbookEntry.objects.filter(action="request.approval_recorded", request_id=access_request.pk)
    assert [entry.detail["approvals"] for entry in recorded.order_by("id")] == [1, 1]
    # Two approvals are asked for and one counts: the request still waits, as the Logbook says.
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    assert approvals_counted(request_id=access_request.pk, account=world.prod) == 1
    assert logbook_verify().intact


def test_an_approval_counted_before_the_admin_took_approving_away_stands(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request, xavier = two_approvals_one_given(world)
    post = admin_post(world, xavier, can_approve=None)
    # Carol's approval is held after counting, before its Logbook entries (Xavier's membership read).
    hold = Hold(decide.logbook_append)
    monkeypatch.setattr(decide, "logbook_append", hold)
    carol = Side(lambda: services.access_request_approve(access_request=access_request, approver=world.approver))
    carol.start()
    hold.wait(carol)

    admin = Side(post)
    admin.start()
    wait_for_a_lock_waiter()  # the admin's change of Xavier waits for Carol's count to commit
    hold.release.set()

    carol.finish()
    assert admin.finish() == 302
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.APPROVED  # two counted when Carol approved
    assert not Membership.objects.get(user=xavier, account=world.prod).can_approve
    # Approved, provisioning not started: Xavier's approval no longer counts, as the Logbook says
    # (provisioning sends the request back to pending for the approval now missing).
    discounted = LogbookEntry.objects.get(action="request.approval_discounted", request_id=access_request.pk)
    assert (discounted.detail["approvals"], discounted.detail["required"]) == (1, 2)
    assert logbook_verify().intact


# --- one approval given while the admin takes approving away --------------------------------


@pytest.mark.parametrize("how", ["approving taken away", "membership removed", "deactivated"])
def test_a_single_approval_waits_for_the_admin_taking_approving_away_and_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy"
    )
    carol = world.approver  # as her page loaded her: an approver of the account, active
    post = admin_stops_approving(world, carol, how)
    # The admin's transaction is held open after its change of Carol, before its commit.
    hold = Hold(services.access_request_approvals_discounted, after=True)
    monkeypatch.setattr(services, "access_request_approvals_discounted", hold)
    admin = Side(post)
    admin.start()
    hold.wait(admin)

    approving = Side(lambda: services.access_request_approve(access_request=access_request, approver=carol))
    approving.start()
    wait_for_a_lock_waiter(unless_done=approving)  # her approval waits for the admin's change of her
    hold.release.set()

    assert admin.finish() == 302
    approving.join(30)
    assert isinstance(approving.error, RequestRuleError), approving.error or "approved"
    # The admin's change came first: Carol no longer approves, so the request still waits.
    access_request.refresh_from_db()
    assert (access_request.status, access_request.decided_by) == (RequestStatus.PENDING, None)
    assert not LogbookEntry.objects.filter(action="request.approved").exists()
    denied = LogbookEntry.objects.get(action="request.approve_denied", request_id=access_request.pk)
    assert denied.actor_id == carol.pk
    assert denied.detail["denied"] == {"__all__": [f"You do not approve requests for {world.prod.name}."]}
    assert logbook_verify().intact
