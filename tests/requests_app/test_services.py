"""The access-request lifecycle: create, approve, reject, cancel, extend, complete, expire.

Each test names one rule of ``requests_app.services.lifecycle`` and fails if that rule is
removed. Provisioning runs for real against a fake fleet (AWS is the only thing faked);
the Celery queue is replaced by a recorder so "enqueued after commit" can be observed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import User
from audit.models import LogbookEntry
from core.errors import NotAllowed, RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, Instance, RequestStatus
from tests.conftest import World
from tests.factories import make_instance, make_membership, make_user

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
LINUX_NAME = re.compile(r"^rs-[a-z2-7]{8}$")
DC_NAME = re.compile(r"^rs-[a-z2-7]{8}-[a-z2-7]{4}$")

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


# --- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def superuser(world: World) -> User:
    return make_user("root", is_superuser=True, is_staff=True)


def create(
    world: World, *, requester: User | None = None, instances: list[Instance] | None = None, **kw: Any
) -> AccessRequest:
    kw.setdefault("reason", "Rotate the TLS certificate on the web tier")
    return services.access_request_create(
        requester=requester or world.requester,
        account=kw.pop("account", world.prod),
        instances=instances if instances is not None else [world.web],
        **kw,
    )


def approved(world: World, **kw: Any) -> AccessRequest:
    access_request = create(world, **kw)
    return services.access_request_approve(access_request=access_request, approver=world.approver)


def activate(access_request: AccessRequest) -> AccessRequest:
    """Run the provisioning services as the workers would, against the fake fleet."""
    for grant_id in services.access_request_begin_provisioning(request_id=access_request.pk):
        services.grant_provision(grant_id=grant_id)
    access_request.refresh_from_db()
    return access_request


def active(world: World, **kw: Any) -> AccessRequest:
    access_request = activate(approved(world, **kw))
    assert access_request.status == RequestStatus.ACTIVE
    return access_request


def reload(access_request: AccessRequest) -> AccessRequest:
    return AccessRequest.objects.select_related("account").get(pk=access_request.pk)


def actions(access_request: AccessRequest) -> list[str]:
    return list(
        LogbookEntry.objects.filter(request_id=access_request.pk).order_by("id").values_list("action", flat=True)
    )


def messages(error: RequestRuleError, field: str) -> str:
    return " ".join(error.errors.get(field, []))


# --- create ---------------------------------------------------------------------------


def test_create_makes_a_pending_request_lasting_one_hour_by_default(world: World) -> None:
    access_request = create(world, instances=[world.web, world.db], ticket="OPS-17", admin_rights=True)

    assert access_request.status == RequestStatus.PENDING
    assert access_request.duration == timedelta(hours=1)
    assert access_request.ticket == "OPS-17"
    assert access_request.expires_at is None
    assert set(access_request.grants.values_list("instance__name", flat=True)) == {"web-1", "db-1"}
    assert set(access_request.grants.values_list("status", flat=True)) == {GrantStatus.PENDING}


def test_create_writes_request_created_to_the_logbook(world: World) -> None:
    access_request = create(world, instances=[world.web], ticket="OPS-17")

    entry = LogbookEntry.objects.get(action="request.created", request_id=access_request.pk)
    assert entry.actor == world.requester
    assert entry.account_id == world.prod.account_id
    assert entry.instance_id_list == [world.web.instance_id]
    assert entry.detail["reason"] == "Rotate the TLS certificate on the web tier"
    assert entry.detail["ticket"] == "OPS-17"
    assert entry.detail["duration_minutes"] == 60


@pytest.mark.parametrize("reason", ["", "   \n\t"])
def test_create_requires_a_reason(world: World, reason: str) -> None:
    with pytest.raises(RequestRuleError) as caught:
        create(world, reason=reason)
    assert "why" in messages(caught.value, "reason")
    assert not AccessRequest.objects.exists()


def test_create_accepts_a_reason_of_256_characters(world: World) -> None:
    assert len(create(world, reason="r" * 256).reason) == 256


def test_create_refuses_a_reason_longer_than_256_characters(world: World) -> None:
    with pytest.raises(RequestRuleError) as caught:
        create(world, reason="r" * 257)
    assert "257" in messages(caught.value, "reason")
    assert "256" in messages(caught.value, "reason")


@pytest.mark.parametrize("ticket", ["", "INC-4711", "jira:OPS/12#3", "A" * 64])
def test_create_accepts_no_ticket_or_a_well_formed_one(world: World, ticket: str) -> None:
    assert create(world, ticket=ticket).ticket == ticket


@pytest.mark.parametrize("ticket", ["two words", "-starts-with-dash", "A" * 65, "x;rm -rf /", "ticket\n2", "ünï"])
def test_create_refuses_a_malformed_ticket(world: World, ticket: str) -> None:
    with pytest.raises(RequestRuleError) as caught:
        create(world, ticket=ticket)
    assert "ticket" in caught.value.errors


@pytest.mark.parametrize("duration", [timedelta(minutes=15), timedelta(hours=12)])
def test_create_accepts_durations_from_15_minutes_to_12_hours(world: World, duration: timedelta) -> None:
    assert create(world, duration=duration).duration == duration


@pytest.mark.parametrize(
    ("duration", "words"),
    [
        (timedelta(minutes=15) - timedelta(seconds=1), "at least 15 minutes"),
        (timedelta(0), "at least 15 minutes"),
        (timedelta(hours=12, seconds=1), "at most 12 hours"),
    ],
)
def test_create_refuses_durations_outside_15_minutes_to_12_hours(world: World, duration: timedelta, words: str) -> None:
    with pytest.raises(RequestRuleError) as caught:
        create(world, duration=duration)
    assert words in messages(caught.value, "duration")


def test_create_refuses_an_instance_of_another_account_and_names_it(world: World) -> None:
    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[world.web, world.stage_web])
    assert world.stage_web.instance_id in messages(caught.value, "instances")
    assert world.web.instance_id not in messages(caught.value, "instances")


@pytest.mark.parametrize(
    ("persona", "words"),
    [
        ("legacy", "2.3.672.0"),  # agent too old
        ("offline", "ConnectionLost"),  # SSM ping lost
        ("unmanaged", "not managed by AWS Systems Manager"),
    ],
)
def test_create_refuses_an_instance_passport_cannot_reach_and_names_it(world: World, persona: str, words: str) -> None:
    instance = getattr(world, persona)
    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[world.web, instance])
    text = messages(caught.value, "instances")
    assert instance.instance_id in text
    assert words in text
    assert world.web.instance_id not in text


def test_an_unmanaged_instance_is_refused_with_what_it_needs(world: World) -> None:
    """The notes' two requirements: an instance profile allowing Systems Manager, and the agent's version."""
    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[world.unmanaged])
    assert messages(caught.value, "instances") == (
        f"{world.unmanaged.label} is not managed by AWS Systems Manager. It needs an instance profile that allows"
        " Systems Manager (AWS recommends the AmazonSSMManagedInstanceCore managed policy) and SSM Agent"
        " 2.3.672.0 or newer."
    )


def test_create_accepts_exactly_the_minimum_agent_version(world: World) -> None:
    instance = make_instance(world.prod, "just-new-enough", agent_version="2.3.672.0")
    assert create(world, instances=[instance]).grants.count() == 1


@pytest.mark.parametrize("reported", ["", "latest", "+3.0", " 3.0", "3.0.", "\u0663.0"])
def test_create_refuses_an_agent_version_that_is_not_a_dotted_number(world: World, reported: str) -> None:
    # The agent reports its version: what is not plainly newer (e.g. "٣.0", which int() reads as 3) counts as too old.
    instance = make_instance(world.prod, "odd-agent", agent_version=reported)
    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[instance])
    assert "Passport needs" in messages(caught.value, "instances")


def test_create_refuses_an_instance_that_no_longer_exists(world: World) -> None:
    gone = make_instance(world.prod, "gone-1", gone_at=timezone.now())
    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[gone])
    assert gone.instance_id in messages(caught.value, "instances")


def test_create_requires_at_least_one_instance(world: World) -> None:
    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[])
    assert "instances" in caught.value.errors


@pytest.mark.parametrize(("persona", "held"), [("observer", "the Observer role"), ("outsider", "no role")])
def test_only_admins_may_ask_for_access_and_the_refusal_says_the_role(world: World, persona: str, held: str) -> None:
    # The same words as the API's refusal to list instances: one rule (permissions.request_role_refusal).
    with pytest.raises(RequestRuleError) as caught:
        create(world, requester=getattr(world, persona))
    text = messages(caught.value, "account")
    assert f"You have {held} on" in text
    assert "only Admin" in text
    assert not AccessRequest.objects.exists()


def test_a_refused_create_is_written_to_the_logbook_with_the_reasons(world: World) -> None:
    with pytest.raises(RequestRuleError):
        create(world, requester=world.observer, instances=[world.legacy], reason="")

    entry = LogbookEntry.objects.get(action="request.create_denied")
    assert entry.actor == world.observer
    assert entry.request_id is None
    assert entry.instance_id_list == [world.legacy.instance_id]
    denied = entry.detail["denied"]
    assert set(denied) == {"reason", "account", "instances"}
    assert world.legacy.instance_id in " ".join(denied["instances"])
    assert not LogbookEntry.objects.filter(action="request.created").exists()


def test_create_gives_every_grant_the_requesters_username_and_a_suffix_on_domain_controllers(world: World) -> None:
    dc = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    access_request = create(world, instances=[world.web, world.windows, dc])

    names = {grant.instance.name: grant.username for grant in access_request.grants.select_related("instance")}
    assert LINUX_NAME.fullmatch(names["web-1"])
    assert names["win-1"] == names["web-1"]
    assert DC_NAME.fullmatch(names["dc-1"])
    assert names["dc-1"].startswith(names["web-1"] + "-")
    # Stable for the person across requests.
    assert create(world, instances=[world.db]).grants.get().username == names["web-1"]


def test_create_counts_an_instance_chosen_twice_once(world: World) -> None:
    assert create(world, instances=[world.web, world.web]).grants.count() == 1


@pytest.mark.parametrize("state", ["pending", "approved", "active", "completing"])
def test_a_second_live_request_on_a_linux_instance_must_ask_for_the_same_admin_rights(world: World, state: str) -> None:
    """Live requests of one person on a Linux instance share its OS user, and sudo belongs to the user."""
    if state == "pending":
        first = create(world, instances=[world.web])
    elif state == "approved":
        first = approved(world, instances=[world.web])
    else:
        first = active(world, instances=[world.web])
        if state == "completing":
            services.access_request_complete(access_request=first, actor=world.requester)
            assert reload(first).status == RequestStatus.COMPLETING

    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[world.db, world.web], admin_rights=True)

    text = messages(caught.value, "instances")
    assert f"#{first.pk}" in text and "without administrator rights" in text
    assert world.web.instance_id in text
    assert world.db.instance_id not in text
    assert AccessRequest.objects.count() == 1
    # The same rights: each request gets its own grant (and certificate principal) on the instance.
    second = create(world, instances=[world.db, world.web])
    assert second.grants.get(instance=world.web).uid != first.grants.get(instance=world.web).uid


def test_a_second_live_request_on_a_windows_instance_is_refused(world: World) -> None:
    """A Windows user has one password, so one live request per person and instance."""
    windows = make_instance(world.prod, "win-1", platform=Instance.Platform.WINDOWS)
    first = create(world, instances=[windows])

    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[windows])

    assert f"#{first.pk}" in messages(caught.value, "instances")
    assert AccessRequest.objects.count() == 1


def test_a_windows_instance_whose_ended_requests_user_is_still_being_removed_is_refused_until_it_is_gone(
    world: World,
) -> None:
    """The removal would take the new request's user (the same name on the same host) with it."""
    windows = make_instance(world.prod, "win-1", platform=Instance.Platform.WINDOWS)
    first = create(world, instances=[windows])
    # Where a request that failed for good leaves it: ended, its grant's cleanup still to run.
    AccessRequest.objects.filter(pk=first.pk).update(status=RequestStatus.FAILED)
    Grant.objects.filter(request=first).update(status=GrantStatus.REMOVING)

    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[windows])

    text = messages(caught.value, "instances")
    assert f"request #{first.pk} is still being removed" in text and "win-1" in text
    assert AccessRequest.objects.count() == 1
    # A Linux instance's users are per grant: the same situation does not hold a new request back.
    linux = create(world, instances=[world.web])
    AccessRequest.objects.filter(pk=linux.pk).update(status=RequestStatus.FAILED)
    Grant.objects.filter(request=linux).update(status=GrantStatus.REMOVING)
    assert create(world, instances=[world.web]).grants.count() == 1

    Grant.objects.filter(request=first).update(status=GrantStatus.REMOVED)
    assert create(world, instances=[windows]).grants.count() == 1


@pytest.mark.parametrize("end", ["cancelled", "rejected", "completed"])
def test_create_accepts_an_instance_whose_earlier_request_ended(world: World, end: str) -> None:
    first = create(world, instances=[world.web])
    if end == "cancelled":
        services.access_request_cancel(access_request=first, actor=world.requester)
    elif end == "rejected":
        services.access_request_reject(access_request=first, approver=world.approver)
    else:
        activate(services.access_request_approve(access_request=first, approver=world.approver))
        services.access_request_complete(access_request=reload(first), actor=world.requester)
        services.grant_deprovision(grant_id=first.grants.get().pk)
        assert reload(first).status == RequestStatus.COMPLETED

    assert create(world, instances=[world.web]).grants.count() == 1


def test_another_person_may_ask_for_an_instance_someone_already_has(world: World) -> None:
    create(world, instances=[world.web])
    assert create(world, requester=world.member, instances=[world.web]).grants.count() == 1


# --- approve --------------------------------------------------------------------------


def test_an_approver_moves_a_pending_request_to_approved(world: World) -> None:
    access_request = create(world)

    services.access_request_approve(access_request=access_request, approver=world.approver, note="ok, INC open")

    access_request = reload(access_request)
    assert access_request.status == RequestStatus.APPROVED
    assert access_request.decided_by == world.approver
    assert access_request.decided_at is not None
    assert access_request.decision_note == "ok, INC open"
    assert actions(access_request) == ["request.created", "request.approved"]


def test_an_approver_cannot_approve_their_own_request(world: World) -> None:
    # carol approves for prod and is also an Admin there, so she may ask for access.
    access_request = create(world, requester=world.approver)

    with pytest.raises(NotAllowed, match="your own request"):
        services.access_request_approve(access_request=access_request, approver=world.approver)

    assert reload(access_request).status == RequestStatus.PENDING
    assert "request.approve_denied" in actions(access_request)


def test_a_superuser_cannot_approve_their_own_request(world: World, superuser: User) -> None:
    make_membership(superuser, world.prod, "admin")
    access_request = create(world, requester=superuser)

    with pytest.raises(NotAllowed, match="your own request"):
        services.access_request_approve(access_request=access_request, approver=superuser)

    assert reload(access_request).status == RequestStatus.PENDING


def test_a_superuser_may_approve_someone_elses_request(world: World, superuser: User) -> None:
    access_request = services.access_request_approve(access_request=create(world), approver=superuser)
    assert access_request.status == RequestStatus.APPROVED


@pytest.mark.parametrize("persona", ["member", "observer", "outsider", "auditor", "approver_of_staging"])
def test_only_approvers_of_the_account_may_approve(world: World, persona: str) -> None:
    if persona == "approver_of_staging":
        actor = make_user("stan")
        make_membership(actor, world.staging, "admin", can_approve=True)
    else:
        actor = getattr(world, persona)
    access_request = create(world)

    with pytest.raises(NotAllowed, match="do not approve requests for Acme Production"):
        services.access_request_approve(access_request=access_request, approver=actor)

    assert reload(access_request).status == RequestStatus.PENDING
    entry = LogbookEntry.objects.get(action="request.approve_denied")
    assert entry.actor == actor


def test_approving_twice_by_the_same_approver_changes_nothing(
    world: World, django_capture_on_commit_callbacks: Any, queued: list[tuple[str, int]]
) -> None:
    access_request = create(world)
    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_approve(access_request=access_request, approver=world.approver)
    decided_at = reload(access_request).decided_at

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = services.access_request_approve(access_request=reload(access_request), approver=world.approver)

    assert again.status == RequestStatus.APPROVED
    assert again.decided_at == decided_at
    assert callbacks == []
    assert queued == [("begin_provisioning", access_request.pk)]
    assert actions(access_request).count("request.approved") == 1


def test_a_second_approver_gets_a_conflict(world: World, superuser: User) -> None:
    access_request = create(world)
    services.access_request_approve(access_request=access_request, approver=world.approver)

    with pytest.raises(RequestRuleError) as caught:
        services.access_request_approve(access_request=reload(access_request), approver=superuser)

    assert caught.value.code == "conflict"
    assert "approved" in str(caught.value)
    assert reload(access_request).decided_by == world.approver


def test_a_rejected_request_cannot_be_approved_even_by_the_approver_who_rejected_it(world: World) -> None:
    access_request = create(world)
    services.access_request_reject(access_request=access_request, approver=world.approver)

    with pytest.raises(RequestRuleError) as caught:
        services.access_request_approve(access_request=reload(access_request), approver=world.approver)

    assert caught.value.code == "conflict"
    assert reload(access_request).status == RequestStatus.REJECTED


def test_approval_enqueues_begin_provisioning_only_after_commit(
    world: World, django_capture_on_commit_callbacks: Any, queued: list[tuple[str, int]]
) -> None:
    access_request = create(world)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.access_request_approve(access_request=access_request, approver=world.approver)
        assert queued == []  # nothing may reach a worker before the approval is committed

    assert len(callbacks) == 1
    callbacks[0]()
    assert queued == [("begin_provisioning", access_request.pk)]


def test_a_refused_approval_enqueues_nothing(
    world: World, django_capture_on_commit_callbacks: Any, queued: list[tuple[str, int]]
) -> None:
    access_request = create(world)
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(NotAllowed):
        services.access_request_approve(access_request=access_request, approver=world.member)
    assert callbacks == []
    assert queued == []


# --- reject ---------------------------------------------------------------------------


def test_an_approver_rejects_a_pending_request(
    world: World, django_capture_on_commit_callbacks: Any, queued: list[tuple[str, int]]
) -> None:
    access_request = create(world, instances=[world.web, world.db])

    with django_capture_on_commit_callbacks(execute=True):
        services.access_request_reject(access_request=access_request, approver=world.approver, note="no ticket")

    access_request = reload(access_request)
    assert access_request.status == RequestStatus.REJECTED
    assert access_request.decided_by == world.approver
    assert access_request.decision_note == "no ticket"
    assert access_request.ended_at is not None
    assert set(access_request.grants.values_list("status", flat=True)) == {GrantStatus.REMOVED}
    assert queued == []
    assert actions(access_request)[-1] == "request.rejected"


def test_nobody_rejects_their_own_request(world: World) -> None:
    access_request = create(world, requester=world.approver)
    with pytest.raises(NotAllowed, match="own request"):
        services.access_request_reject(access_request=access_request, approver=world.approver)
    assert reload(access_request).status == RequestStatus.PENDING


def test_only_approvers_of_the_account_may_reject(world: World) -> None:
    access_request = create(world)
    with pytest.raises(NotAllowed):
        services.access_request_reject(access_request=access_request, approver=world.member)
    assert reload(access_request).status == RequestStatus.PENDING


def test_an_approved_request_cannot_be_rejected(world: World) -> None:
    access_request = approved(world)
    with pytest.raises(RequestRuleError) as caught:
        services.access_request_reject(access_request=access_request, approver=world.approver)
    assert caught.value.code == "conflict"
    assert reload(access_request).status == RequestStatus.APPROVED


# --- cancel ---------------------------------------------------------------------------


def test_the_requester_cancels_a_pending_request(world: World) -> None:
    access_request = create(world)

    services.access_request_cancel(access_request=access_request, actor=world.requester)

    access_request = reload(access_request)
    assert access_request.status == RequestStatus.CANCELLED
    assert access_request.ended_by == world.requester
    assert set(access_request.grants.values_list("status", flat=True)) == {GrantStatus.REMOVED}
    assert actions(access_request)[-1] == "request.cancelled"


def test_the_requester_cancels_an_approved_request_nothing_was_done_for(world: World) -> None:
    access_request = approved(world, instances=[world.web, world.db])

    services.access_request_cancel(access_request=access_request, actor=world.requester)

    assert reload(access_request).status == RequestStatus.CANCELLED
    # The begin_provisioning task queued by the approval finds nothing to do.
    assert services.access_request_begin_provisioning(request_id=access_request.pk) == []
    assert reload(access_request).status == RequestStatus.CANCELLED


def test_cancel_is_refused_once_a_grant_is_claimed_and_says_complete_instead(world: World) -> None:
    access_request = approved(world)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    Grant.objects.filter(pk=grant_id).update(
        status=GrantStatus.PROVISIONING, lease_until=timezone.now() + timedelta(minutes=5)
    )

    with pytest.raises(RequestRuleError, match="complete the request instead") as caught:
        services.access_request_cancel(access_request=reload(access_request), actor=world.requester)

    assert caught.value.code == "conflict"
    assert reload(access_request).status == RequestStatus.PROVISIONING


def test_cancel_of_an_approved_request_with_a_claimed_grant_says_complete_instead(world: World) -> None:
    # The untouched check, on its own: still approved, but one grant already left "pending".
    access_request = approved(world, instances=[world.web, world.db])
    Grant.objects.filter(request=access_request, instance=world.db).update(status=GrantStatus.PROVISIONING)

    with pytest.raises(RequestRuleError, match="complete the request instead"):
        services.access_request_cancel(access_request=access_request, actor=world.requester)

    assert reload(access_request).status == RequestStatus.APPROVED


def test_an_active_request_cannot_be_cancelled(world: World) -> None:
    access_request = active(world)
    with pytest.raises(RequestRuleError, match="complete the request instead"):
        services.access_request_cancel(access_request=access_request, actor=world.requester)
    assert reload(access_request).status == RequestStatus.ACTIVE


@pytest.mark.parametrize("persona", ["approver", "member", "outsider"])
def test_only_the_requester_cancels(world: World, persona: str) -> None:
    access_request = create(world)
    with pytest.raises(NotAllowed):
        services.access_request_cancel(access_request=access_request, actor=getattr(world, persona))
    assert reload(access_request).status == RequestStatus.PENDING
    assert "request.cancel_denied" in actions(access_request)


def test_a_superuser_may_cancel_any_request(world: World, superuser: User) -> None:
    access_request = services.access_request_cancel(access_request=create(world), actor=superuser)
    assert access_request.status == RequestStatus.CANCELLED


# --- extend ---------------------------------------------------------------------------


def test_the_requester_extends_an_active_request(world: World, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    access_request = active(world)
    time_machine.shift(timedelta(minutes=30))

    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))

    access_request = reload(access_request)
    assert access_request.extended_by == timedelta(hours=1)
    assert access_request.expires_at == T0 + timedelta(hours=2)
    entry = LogbookEntry.objects.get(action="request.extended", request_id=access_request.pk)
    assert entry.detail["by_minutes"] == 60
    assert entry.detail["total_minutes"] == 120


@pytest.mark.parametrize("state", ["pending", "approved", "completed"])
def test_only_an_active_request_can_be_extended(world: World, state: str) -> None:
    if state == "pending":
        access_request = create(world)
    elif state == "approved":
        access_request = approved(world)
    else:
        access_request = active(world)
        services.access_request_complete(access_request=access_request, actor=world.requester)

    with pytest.raises(RequestRuleError, match="cannot be extended") as caught:
        services.access_request_extend(
            access_request=reload(access_request), actor=world.requester, by=timedelta(minutes=30)
        )

    assert caught.value.code == "conflict"
    assert reload(access_request).extended_by == timedelta(0)


def test_an_extension_may_bring_the_total_to_exactly_12_hours(world: World) -> None:
    access_request = active(world, duration=timedelta(hours=10, minutes=30))

    services.access_request_extend(
        access_request=access_request, actor=world.requester, by=timedelta(hours=1, minutes=30)
    )

    assert reload(access_request).total_duration == timedelta(hours=12)


def test_an_extension_past_12_hours_in_total_is_refused_and_says_how_much_is_left(world: World) -> None:
    access_request = active(world, duration=timedelta(hours=10, minutes=30))

    with pytest.raises(RequestRuleError) as caught:
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))

    text = messages(caught.value, "by")
    assert "12 hours" in text
    assert "10 h 30 min" in text
    assert "at most 1 h 30 min more" in text
    assert reload(access_request).extended_by == timedelta(0)
    assert "request.extend_denied" in actions(access_request)


def test_earlier_extensions_count_towards_the_12_hours(world: World) -> None:
    access_request = active(world, duration=timedelta(hours=8))
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=3))

    with pytest.raises(RequestRuleError, match="at most 1 h more"):
        services.access_request_extend(
            access_request=reload(access_request), actor=world.requester, by=timedelta(hours=2)
        )

    assert reload(access_request).total_duration == timedelta(hours=11)


def test_an_extension_is_at_least_15_minutes(world: World) -> None:
    access_request = active(world)
    with pytest.raises(RequestRuleError, match="at least 15 minutes"):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(minutes=5))
    assert reload(access_request).extended_by == timedelta(0)


@pytest.mark.parametrize("persona", ["approver", "member"])
def test_only_the_requester_extends(world: World, persona: str) -> None:
    access_request = active(world)
    with pytest.raises(NotAllowed):
        services.access_request_extend(
            access_request=access_request, actor=getattr(world, persona), by=timedelta(hours=1)
        )
    assert reload(access_request).extended_by == timedelta(0)


def test_two_concurrent_extensions_cannot_both_pass_the_12_hour_check(world: World) -> None:
    access_request = active(world, duration=timedelta(hours=10))
    first_tab = reload(access_request)
    second_tab = reload(access_request)  # loaded before the first extension: stale

    services.access_request_extend(access_request=first_tab, actor=world.requester, by=timedelta(hours=2))
    with pytest.raises(RequestRuleError) as caught:
        services.access_request_extend(access_request=second_tab, actor=world.requester, by=timedelta(hours=2))

    # Asked again of the row as it is now (locked): the 12 hours are used up.
    assert caught.value.code == "invalid" and "this request has 12 h" in str(caught.value)
    assert reload(access_request).total_duration == timedelta(hours=12)
    assert actions(access_request).count("request.extended") == 1


def test_an_extension_after_the_time_is_up_is_refused(world: World, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    access_request = active(world)
    time_machine.move_to(T0 + timedelta(hours=1), tick=False)

    with pytest.raises(RequestRuleError, match="run out") as caught:
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))

    assert caught.value.code == "conflict"
    assert reload(access_request).expires_at == T0 + timedelta(hours=1)


# --- complete -------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["requester", "approver", "superuser"])
def test_the_requester_an_approver_or_a_superuser_completes_an_active_request(
    world: World,
    superuser: User,
    persona: str,
    django_capture_on_commit_callbacks: Any,
    queued: list[tuple[str, int]],
) -> None:
    actor = superuser if persona == "superuser" else getattr(world, persona)
    access_request = active(world, instances=[world.web, world.db])
    grant_ids = sorted(access_request.grants.values_list("pk", flat=True))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.access_request_complete(access_request=access_request, actor=actor)
        assert queued == []

    access_request = reload(access_request)
    assert access_request.status == RequestStatus.COMPLETING
    assert access_request.end_reason == EndReason.COMPLETED
    assert access_request.ended_by == actor
    assert set(access_request.grants.values_list("status", flat=True)) == {GrantStatus.REMOVING}
    for callback in callbacks:
        callback()
    # Both hosts are Linux hosts of one region: one removal for the two grants.
    assert queued == [("deprovision_grants", grant_ids)]
    assert actions(access_request)[-1] == "request.completing"


@pytest.mark.parametrize("persona", ["outsider", "member", "observer", "auditor"])
def test_others_cannot_complete_a_request(world: World, persona: str) -> None:
    access_request = active(world)
    with pytest.raises(NotAllowed):
        services.access_request_complete(access_request=access_request, actor=getattr(world, persona))
    assert reload(access_request).status == RequestStatus.ACTIVE
    assert "request.complete_denied" in actions(access_request)


def test_completing_an_approved_request_that_was_never_provisioned_ends_it_at_once(world: World) -> None:
    access_request = approved(world)

    services.access_request_complete(access_request=access_request, actor=world.requester)

    access_request = reload(access_request)
    assert access_request.status == RequestStatus.COMPLETED
    assert set(access_request.grants.values_list("status", flat=True)) == {GrantStatus.REMOVED}
    assert actions(access_request)[-2:] == ["request.completing", "request.completed"]


def test_a_pending_request_cannot_be_completed(world: World) -> None:
    access_request = create(world)
    with pytest.raises(RequestRuleError, match="cannot be completed") as caught:
        services.access_request_complete(access_request=access_request, actor=world.requester)
    assert caught.value.code == "conflict"


def test_completing_twice_is_harmless(world: World) -> None:
    access_request = active(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    services.access_request_complete(access_request=reload(access_request), actor=world.approver)
    access_request = reload(access_request)
    assert access_request.status == RequestStatus.COMPLETING
    assert access_request.ended_by == world.requester
    assert actions(access_request).count("request.completing") == 1


# --- expire ---------------------------------------------------------------------------


def test_a_request_is_not_expired_one_second_before_expires_at(world: World, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    access_request = active(world)
    time_machine.move_to(access_request.expires_at - timedelta(seconds=1), tick=False)

    assert services.due_for_expiry() == []
    assert services.access_request_expire(access_request=access_request) is False
    assert reload(access_request).status == RequestStatus.ACTIVE


def test_a_request_expires_at_expires_at(world: World, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    access_request = active(world)
    time_machine.move_to(access_request.expires_at, tick=False)

    assert services.due_for_expiry() == [access_request.pk]
    assert services.access_request_expire(access_request=access_request) is True

    access_request = reload(access_request)
    assert access_request.status == RequestStatus.COMPLETING
    assert access_request.end_reason == EndReason.EXPIRED
    assert access_request.ended_by is None
    assert set(access_request.grants.values_list("status", flat=True)) == {GrantStatus.REMOVING}
    assert actions(access_request)[-1] == "request.expiring"


def test_expiry_moves_with_an_extension(world: World, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    access_request = active(world)
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    time_machine.move_to(T0 + timedelta(hours=1), tick=False)

    assert services.access_request_expire(access_request=reload(access_request)) is False
    assert reload(access_request).status == RequestStatus.ACTIVE


def test_expire_with_a_stale_copy_does_not_end_a_request_extended_meanwhile(world: World, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    access_request = active(world)
    seen_by_expiry_worker = reload(access_request)  # expires_at = T0 + 1 h
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    time_machine.move_to(T0 + timedelta(hours=1), tick=False)

    assert services.access_request_expire(access_request=seen_by_expiry_worker) is False
    assert reload(access_request).status == RequestStatus.ACTIVE


def test_only_an_active_request_expires(world: World, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    access_request = active(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    time_machine.move_to(T0 + timedelta(days=1), tick=False)

    assert services.access_request_expire(access_request=reload(access_request)) is False
    assert reload(access_request).end_reason == EndReason.COMPLETED


def test_the_clock_starts_when_access_is_granted_not_when_it_was_asked_for(world: World, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    access_request = create(world, duration=timedelta(hours=2))
    time_machine.move_to(T0 + timedelta(hours=3), tick=False)
    services.access_request_approve(access_request=access_request, approver=world.approver)
    time_machine.move_to(T0 + timedelta(hours=5), tick=False)

    access_request = activate(access_request)

    assert access_request.status == RequestStatus.ACTIVE
    assert access_request.activated_at == T0 + timedelta(hours=5)
    assert access_request.expires_at == T0 + timedelta(hours=7)
