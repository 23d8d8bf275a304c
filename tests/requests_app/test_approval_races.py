"""An approval racing a site admin's change of the *requester* (their role lowered, their membership
removed, their deactivation), each on its own PostgreSQL connection, as two processes would.

Only an Admin of the account may have access, so an approval asks again whether the requester still
is one (``access_request_approve_check``). Asked of rows it does not hold, that answer could be the
one before a change not yet committed, and the change's revocation could look for live requests
before the approval committed: the request approved for someone no longer an Admin, and nothing
revoking it. Whichever commits first, the outcome must be as if they had run one after the other:
the approval refused (the request still waits) or the approved request revoked. The lock order is
in ``requests_app.services.lifecycle``; the race helpers are ``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from accounts.models import ApprovalPolicy, Membership, User
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, EndReason, RequestStatus
from requests_app.services.lifecycle import decide
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    admin_post,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.audit.admin_forms import form_data, superuser_client
from tests.conftest import World
from tests.factories import make_membership, make_user

CHANGES = ["role lowered", "membership removed", "deactivated"]
# A note as a hostile approver might send it: markup and quotes, kept as text.
NOTE = "ok <img src=x onerror=alert(1)> \"'; --"


def _pending(world: World, approvals: int) -> AccessRequest:
    """Alice's request on prod; with two approvals asked for, Xavier's is given already."""
    if approvals > 1:
        ApprovalPolicy.objects.create(account=world.prod, approvals_required=approvals)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy <b>now</b>"
    )
    if approvals > 1:
        xavier = make_user("xavier", first_name="Xavier", last_name="Approver")
        make_membership(xavier, world.prod, "observer", can_approve=True)
        services.access_request_approve(access_request=access_request, approver=xavier)
    return access_request


def _change_of_alice(world: World, change: str) -> Callable[[], int]:
    """The site admin's POST that lowers, removes or deactivates Alice."""
    if change == "deactivated":
        client, _root = superuser_client()
        url = f"/admin/accounts/user/{world.requester.pk}/change/"
        data = form_data(client, url, is_active=None)  # "Active" unticked
        return lambda: client.post(url, data).status_code
    return admin_post(
        world, world.requester, **({"role": "observer"} if change == "role lowered" else {"DELETE": "on"})
    )


def _assert_alice_changed(world: World, change: str) -> None:
    alice = User.objects.get(pk=world.requester.pk)
    membership = Membership.objects.filter(user=alice, account=world.prod).first()
    if change == "deactivated":
        assert not alice.is_active
    elif change == "role lowered":
        assert membership is not None and membership.role == "observer"
    else:
        assert membership is None


@pytest.mark.parametrize("approvals", [1, 2])
@pytest.mark.parametrize("change", CHANGES)
def test_an_approval_waits_for_the_requester_being_changed_and_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, change: str, approvals: int
) -> None:
    access_request = _pending(world, approvals)
    post = _change_of_alice(world, change)
    # The admin's transaction is held open after its change of Alice (and the revocation of her
    # live requests: none, this one still waits), before its commit.
    hold = Hold(services.access_request_approvals_discounted, after=True)
    monkeypatch.setattr(services, "access_request_approvals_discounted", hold)
    admin = Side(post)
    admin.start()
    hold.wait(admin)

    approving = Side(
        lambda: services.access_request_approve(access_request=access_request, approver=world.approver, note=NOTE)
    )
    approving.start()
    wait_for_a_lock_waiter(unless_done=approving)  # the approval waits for the admin's change of Alice
    hold.release.set()

    assert admin.finish() == 302
    approving.join(30)
    assert isinstance(approving.error, RequestRuleError), approving.error or "approved"
    _assert_alice_changed(world, change)
    # The admin's change came first: Alice may not have access, so the request still waits.
    access_request.refresh_from_db()
    assert (access_request.status, access_request.decided_by) == (RequestStatus.PENDING, None)
    assert not LogbookEntry.objects.filter(action="request.approved").exists()
    denied = LogbookEntry.objects.get(action="request.approve_denied", request_id=access_request.pk)
    assert denied.actor_id == world.approver.pk
    assert "It cannot be approved; reject it instead." in str(denied.detail["denied"])
    assert logbook_verify().intact


@pytest.mark.parametrize("approvals", [1, 2])
@pytest.mark.parametrize("change", CHANGES)
def test_a_change_of_the_requester_waits_for_the_approval_and_revokes_it(
    world: World, monkeypatch: pytest.MonkeyPatch, change: str, approvals: int
) -> None:
    access_request = _pending(world, approvals)
    post = _change_of_alice(world, change)
    # The approval is held after its checks under lock, before its Logbook entry and its commit.
    hold = Hold(decide.logbook_append)
    monkeypatch.setattr(decide, "logbook_append", hold)
    approving = Side(
        lambda: services.access_request_approve(access_request=access_request, approver=world.approver, note=NOTE)
    )
    approving.start()
    hold.wait(approving)

    admin = Side(post)
    admin.start()
    wait_for_a_lock_waiter(unless_done=admin)  # the admin's change of Alice waits for the approval to commit
    hold.release.set()

    approving.finish()
    assert admin.finish() == 302
    _assert_alice_changed(world, change)
    # The approval came first, then the admin's change: it ended the access just approved.
    access_request.refresh_from_db()
    assert access_request.decided_by == world.approver
    assert access_request.end_reason == EndReason.REVOKED
    assert access_request.status in (RequestStatus.COMPLETING, RequestStatus.COMPLETED)
    approved = LogbookEntry.objects.get(action="request.approved", request_id=access_request.pk)
    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=access_request.pk)
    assert approved.pk < revoked.pk
    assert logbook_verify().intact
