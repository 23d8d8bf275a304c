"""A person deactivated (``is_active`` cleared: the admin's "Active" box, a script, any save) keeps
nothing: their live requests are revoked as a lowered role revokes them (``end_reason`` ``revoked``,
a ``request.revoked`` Logbook entry with ``via`` ``deactivated``, the mail), their open terminals'
sign-in check fails, a pending request of theirs cannot be approved, and one approved meanwhile
is not provisioned."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import notifications, services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.notifications import delivery
from terminal import services as terminal_services
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.conftest import World
from tests.factories import make_active_request

pytestmark = pytest.mark.django_db

DEACTIVATED = "Alice Admin is deactivated in Passport; a deactivated person may not have access to any instance."


@pytest.fixture(autouse=True)
def no_iam(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = False


@pytest.fixture
def mails(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(delivery, "notification_dispatch", lambda *, kind, request_id: sent.append((kind, request_id)))
    return sent


def _deactivate_in_the_admin(user: User) -> User:
    client, root = superuser_client()
    url = f"/admin/accounts/user/{user.pk}/change/"
    post_ok(client, url, form_data(client, url, is_active=None))  # untick "Active"
    user.refresh_from_db()
    assert not user.is_active
    return root


def test_deactivating_a_person_in_the_admin_ends_their_live_access(
    world: World, mails: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    erin = make_active_request(world.member, world.prod, world.web)
    browser = Client()
    browser.force_login(world.requester)
    session_key = browser.session.session_key
    assert terminal_services.terminal_session_signed_in(session_key=session_key, user_id=world.requester.pk)

    with django_capture_on_commit_callbacks(execute=True):
        root = _deactivate_in_the_admin(world.requester)

    # What her open browser terminals (and any watcher's page of hers) ask every few seconds.
    assert not terminal_services.terminal_session_signed_in(session_key=session_key, user_id=world.requester.pk)
    alice.refresh_from_db()
    assert (alice.status, alice.end_reason, alice.ended_by) == (RequestStatus.COMPLETING, "revoked", root)
    assert Grant.objects.get(request=alice).status == GrantStatus.REMOVING
    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=alice.pk)
    assert revoked.actor == root
    assert revoked.detail == {"end_reason": "revoked", "why": DEACTIVATED, "role": "admin", "via": "deactivated"}
    assert (notifications.Kind.REVOKED, alice.pk) in mails
    # Another person's access on the same account is theirs to keep.
    assert AccessRequest.objects.get(pk=erin.pk).status == RequestStatus.ACTIVE


def test_deactivating_by_any_save_ends_live_access_once(world: World) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    world.requester.is_active = False
    world.requester.save()

    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=alice.pk)
    assert revoked.actor is None and revoked.detail["via"] == "deactivated"
    assert AccessRequest.objects.get(pk=alice.pk).status == RequestStatus.COMPLETING
    # Saved again while inactive: nothing more to end, nothing more written.
    entries = LogbookEntry.objects.count()
    world.requester.first_name = "Alicia"
    world.requester.save()
    assert LogbookEntry.objects.count() == entries


def test_a_deactivated_persons_pending_request_cannot_be_approved(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="before leaving"
    )
    _deactivate_in_the_admin(world.requester)

    with pytest.raises(RequestRuleError) as caught:
        services.access_request_approve(access_request=access_request, approver=world.approver)

    assert caught.value.errors["__all__"] == [f"{DEACTIVATED} It cannot be approved; reject it instead."]
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING and access_request.decided_by is None
    # The approver's page offers Reject, and says why in place of Approve.
    approver = Client()
    approver.force_login(world.approver)
    assert DEACTIVATED in approver.get(f"/requests/{access_request.pk}/").content.decode()


def test_an_approved_request_of_a_person_deactivated_behind_the_signals_is_not_provisioned(world: World) -> None:
    """A write no receiver hears (raw SQL, the plain base manager: no save, no update() of the trailed
    queryset) still leaves nothing to provision: begin-provisioning asks again."""
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    User._base_manager.filter(pk=world.requester.pk).update(is_active=False)

    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []

    access_request.refresh_from_db()
    # Its grants were never attempted: nothing to clean up, so it settles at once.
    assert access_request.status == RequestStatus.COMPLETED and access_request.end_reason == "revoked"
    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=access_request.pk)
    assert revoked.detail["via"] == "provisioning" and revoked.detail["why"] == DEACTIVATED
    assert not LogbookEntry.objects.filter(action="request.provisioning", request_id=access_request.pk).exists()
