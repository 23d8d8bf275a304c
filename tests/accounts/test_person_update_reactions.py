"""A person's password, "Active" flag or site admin changed by a queryset's update() (a script, an
incident response locking people out in bulk) reacts as a save does (accounts.signals): the CLI
tokens are revoked, ``auth.password_changed`` is written, the live access of a deactivated person
ends and the approvals that stop counting are discounted, all in the update's transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from accounts.approval_policies import approvals_counted
from accounts.change_trail import changes_recorded_elsewhere
from accounts.models import ApiToken, ApprovalPolicy, User
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from tests.factories import make_active_request, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_iam(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = False


def _token(user: User, mark: str) -> ApiToken:
    return ApiToken.objects.create(
        user=user, name="cli", token_hash=mark * 64, expires_at=timezone.now() + timedelta(days=1)
    )


def _actions_since(mark: int) -> list[str]:
    return list(LogbookEntry.objects.filter(pk__gt=mark).order_by("pk").values_list("action", flat=True))


def _last_entry() -> int:
    return LogbookEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def test_a_person_deactivated_by_an_update_loses_live_access_and_tokens(world: World) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    erin = make_active_request(world.member, world.prod, world.web)
    _token(world.requester, "b")
    _token(world.member, "d")

    assert User.objects.filter(pk=world.requester.pk).update(is_active=False) == 1

    assert AccessRequest.objects.get(pk=alice.pk).status == RequestStatus.COMPLETING
    revoked = LogbookEntry.objects.get(action="request.revoked", request_id=alice.pk)
    assert revoked.detail["via"] == "deactivated" and revoked.actor is None
    assert not ApiToken.objects.filter(user=world.requester).exists()
    # Erin was not in the update: hers stay.
    assert AccessRequest.objects.get(pk=erin.pk).status == RequestStatus.ACTIVE
    assert ApiToken.objects.filter(user=world.member).count() == 1
    # And the trail has the change itself, after the reactions' entries (as a save writes them).
    actions = list(LogbookEntry.objects.order_by("pk").values_list("action", flat=True))
    assert actions[-1] == "person.changed"
    assert LogbookEntry.objects.get(action="person.changed").detail["bulk"] == "update"


def test_an_update_of_people_already_inactive_ends_nothing_again(world: World) -> None:
    User.objects.filter(pk=world.requester.pk).update(is_active=False)
    mark = _last_entry()
    assert User.objects.filter(pk=world.requester.pk).update(is_active=False) == 1
    assert _actions_since(mark) == []


def test_a_password_replaced_by_an_update_revokes_tokens_and_is_on_record(world: World) -> None:
    _token(world.requester, "c")
    _token(world.member, "e")
    mark = _last_entry()

    User.objects.filter(pk=world.requester.pk).update(password=make_password(None))

    assert not ApiToken.objects.filter(user=world.requester).exists()
    assert ApiToken.objects.filter(user=world.member).count() == 1
    actions = _actions_since(mark)
    assert "auth.password_changed" in actions and "cli.token_revoked" in actions
    changed = LogbookEntry.objects.get(pk__gt=mark, action="auth.password_changed")
    assert changed.actor is None  # a script's doing
    assert changed.detail == {"how": "other", "usable": False, "user": "alice"}


def test_an_update_that_writes_the_same_password_reacts_to_nothing(world: World) -> None:
    _token(world.requester, "f")
    stored = User.objects.get(pk=world.requester.pk).password
    mark = _last_entry()
    User.objects.filter(pk=world.requester.pk).update(password=stored)
    assert _actions_since(mark) == []
    assert ApiToken.objects.filter(user=world.requester).count() == 1


def test_site_admin_taken_away_by_an_update_discounts_the_approvals_it_gave(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    sally = make_user("sally", is_superuser=True, is_staff=True)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="two approvals"
    )
    services.access_request_approve(access_request=access_request, approver=sally)
    assert approvals_counted(request_id=access_request.pk, account=world.prod) == 1

    User.objects.filter(pk=sally.pk).update(is_superuser=False)

    assert approvals_counted(request_id=access_request.pk, account=world.prod) == 0
    discounted = LogbookEntry.objects.get(action="request.approval_discounted", request_id=access_request.pk)
    assert discounted.detail["via"] == "site_admin_removed"


def test_the_reactions_go_with_the_updates_transaction(world: World) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    _token(world.requester, "9")
    entries = LogbookEntry.objects.count()

    with pytest.raises(RuntimeError), transaction.atomic():
        User.objects.filter(pk=world.requester.pk).update(is_active=False, password=make_password(None))
        raise RuntimeError("rolled back")

    assert AccessRequest.objects.get(pk=alice.pk).status == RequestStatus.ACTIVE
    assert ApiToken.objects.filter(user=world.requester).count() == 1
    assert LogbookEntry.objects.count() == entries
    assert User.objects.get(pk=world.requester.pk).is_active


def test_an_update_a_service_records_itself_still_reacts_as_its_save_would(world: World) -> None:
    alice = make_active_request(world.requester, world.prod, world.web)
    _token(world.requester, "7")

    with changes_recorded_elsewhere():
        User.objects.filter(pk=world.requester.pk).update(is_active=False)

    assert AccessRequest.objects.get(pk=alice.pk).status == RequestStatus.COMPLETING
    assert not ApiToken.objects.filter(user=world.requester).exists()
    # Its own entry is the service's to write, not the trail's.
    assert not LogbookEntry.objects.filter(action="person.changed").exists()
