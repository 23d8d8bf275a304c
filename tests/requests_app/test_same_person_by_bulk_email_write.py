"""An email written by a queryset's update() or bulk_update() moves the person's key (accounts.change_trail_bulk)
and, as a save does, records at once the approvals the change discounts (accounts.signals.person_saved_react's
person_email_changed): the approver who has just become the requester's person no longer counts."""

from __future__ import annotations

import pytest

from accounts.models import User
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from tests.requests_app.test_same_person_after_approval import _discounted, _one_of_two

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]


def _lone_approval(world: World) -> AccessRequest:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="one approval"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    return access_request


def test_an_update_of_the_email_moves_the_key_and_discounts_the_approval_on_record(world: World) -> None:
    access_request = _one_of_two(world)
    User.objects.filter(pk=world.approver.pk).update(email=world.requester.email)
    world.approver.refresh_from_db()
    assert world.approver.email_key == world.requester.email_key
    assert len(_discounted(access_request)) == 1


def test_a_bulk_update_of_the_email_discounts_the_approval_on_record(world: World) -> None:
    access_request = _one_of_two(world)
    world.approver.email = world.requester.email.upper()
    User.objects.bulk_update([world.approver], ["email"])
    world.approver.refresh_from_db()
    assert world.approver.email_key == world.requester.email_key
    assert len(_discounted(access_request)) == 1


def test_a_lone_approval_discounted_by_an_update_of_the_email_sends_the_request_back_to_pending(
    world: World,
) -> None:
    access_request = _lone_approval(world)
    User.objects.filter(pk=world.approver.pk).update(email=world.requester.email)
    assert len(_discounted(access_request)) == 1
    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING


def test_an_update_that_leaves_the_key_alone_discounts_nothing(world: World) -> None:
    access_request = _one_of_two(world)
    User.objects.filter(pk=world.approver.pk).update(email=world.approver.email.upper())
    assert _discounted(access_request) == []
