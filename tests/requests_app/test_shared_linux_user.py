"""A person's Linux user on a host is shared by their requests there, and sudo is the user's.

So a request must agree on administrator rights with every other of the person's on the same
host whose user may still be there: the live ones (``test_services``), and an ended one whose
grant is still being removed (a request that failed for good before its cleanup ran). And the
create script without administrator rights leaves the user no Passport sudoers file of any grant
(``tests/fleet/test_scripts.py``), so a file its portal no longer knows of (a host restored from a
snapshot) gives nothing either. The end-to-end tests run the real scripts on the fake host there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import CommandResult
from requests_app import services
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, RequestStatus
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, failed, ok
from tests.fleet.test_scripts import fake_host, real_rm_and_mv, run_on
from tests.requests_app.test_services import create

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")


def _failed_with_cleanup_pending(access_request: AccessRequest) -> AccessRequest:
    """Where a request that failed for good leaves it: ended, its grant's removal still to run."""
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.FAILED, end_reason=EndReason.FAILED, ended_at=timezone.now()
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.REMOVING)
    return AccessRequest.objects.get(pk=access_request.pk)


def _still_being_removed(world: World, earlier: AccessRequest) -> str:
    with_or_without = "with" if earlier.admin_rights else "without"
    return (
        f"Your user on {world.web} from request #{earlier.pk} {with_or_without} administrator rights is still "
        "being removed; ask for the same, or ask again once it is gone (the request's page shows its cleanup)."
    )


# --- at request creation ----------------------------------------------------------------


@pytest.mark.parametrize("earlier_admin", [True, False], ids=["earlier-with-sudo", "earlier-without"])
def test_a_linux_request_must_agree_on_admin_rights_with_an_ended_one_whose_user_is_still_being_removed(
    world: World, earlier_admin: bool
) -> None:
    earlier = _failed_with_cleanup_pending(create(world, instances=[world.web], admin_rights=earlier_admin))

    with pytest.raises(RequestRuleError) as caught:
        create(world, instances=[world.db, world.web], admin_rights=not earlier_admin)

    assert caught.value.errors == {"instances": [_still_being_removed(world, earlier)]}
    assert AccessRequest.objects.count() == 1
    denied = LogbookEntry.objects.get(action="request.create_denied")
    assert denied.actor == world.requester and denied.detail["denied"] == caught.value.errors

    # The same rights are accepted: its create script converges the user on them.
    same = create(world, instances=[world.web], admin_rights=earlier_admin)
    services.access_request_cancel(access_request=same, actor=world.requester)
    # Once the earlier user is gone, so is the rule.
    Grant.objects.filter(request=earlier).update(status=GrantStatus.REMOVED, removed_at=timezone.now())
    assert create(world, instances=[world.web], admin_rights=not earlier_admin).admin_rights is not earlier_admin


def test_the_api_refuses_it_with_400_naming_the_request(world: World) -> None:
    earlier = _failed_with_cleanup_pending(create(world, instances=[world.web], admin_rights=True))
    client = APIClient()
    client.force_authenticate(world.requester)

    response = client.post(
        "/api/requests/",
        {"account": world.prod.account_id, "instances": [world.web.instance_id], "reason": "Read the logs"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"instances": [_still_being_removed(world, earlier)]}
    assert AccessRequest.objects.count() == 1


def test_the_form_shows_why_beside_the_instances(world: World, client: Any) -> None:
    earlier = _failed_with_cleanup_pending(create(world, instances=[world.web], admin_rights=True))
    client.force_login(world.requester)

    response = client.post(
        reverse("requests:create"),
        {"account": world.prod.pk, "instances": [world.web.pk], "duration": 60, "reason": "Read the logs"},
    )

    assert response.status_code == 200
    assert f"from request #{earlier.pk} with administrator rights is still being removed" in (
        response.content.decode().replace("&#x27;", "'")
    )
    assert AccessRequest.objects.count() == 1


# --- on the host, the real scripts ------------------------------------------------------


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """The fake host of ``test_scripts``, its rm and mv acting for real (on paths under it only)."""
    root = fake_host(tmp_path)
    real_rm_and_mv(root)
    return root


def _runs_on(host: Path, *, portal_hears: CommandResult | None = None) -> Callable[..., CommandResult]:
    """A fleet step: the script runs on the fake host; the portal hears its outcome, or ``portal_hears``."""

    def step(**kw: Any) -> CommandResult:
        code, _ = run_on(host, kw["script"])
        if portal_hears is not None:
            assert code == 0
            return portal_hears
        return ok() if code == 0 else failed(exit_code=code, stderr=f"exit {code}")

    return step


def _sudoers_of(host: Path, username: str) -> dict[str, str]:
    return {
        path.name: path.read_text()
        for path in (host / "etc" / "sudoers.d").iterdir()
        if path.name.startswith(f"passport-{username}")
    }


def _provision(world: World, access_request: AccessRequest) -> Grant:
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    services.grant_provision(grant_id=grant_id)
    return Grant.objects.get(pk=grant_id)


def test_a_failed_admin_requests_sudo_never_reaches_a_later_request_without_it(
    world: World, fleet: FakeFleet, host: Path, settings: Any
) -> None:
    """The reviewer's path: the create script ran, but the portal never heard it succeed."""
    settings.PASSPORT_GRANT_MAX_ATTEMPTS = 1
    fleet.will(_runs_on(host, portal_hears=failed(exit_code=1)))
    earlier = _provision(world, create(world, instances=[world.web], admin_rights=True))
    assert AccessRequest.objects.get(pk=earlier.request_id).status == RequestStatus.FAILED
    assert Grant.objects.get(pk=earlier.pk).status == GrantStatus.REMOVING
    assert _sudoers_of(host, earlier.username)  # left on the host until its removal runs

    with pytest.raises(RequestRuleError, match="is still being removed"):
        create(world, instances=[world.web], admin_rights=False)

    fleet.will(_runs_on(host))
    services.grant_deprovision(grant_id=earlier.pk)
    assert Grant.objects.get(pk=earlier.pk).status == GrantStatus.REMOVED
    fleet.will(_runs_on(host))
    later = _provision(world, create(world, instances=[world.web], admin_rights=False))

    assert later.status == GrantStatus.READY and later.username == earlier.username
    assert _sudoers_of(host, later.username) == {}


def test_a_sudoers_file_a_restored_snapshot_brings_back_gives_a_later_request_no_sudo(
    world: World, fleet: FakeFleet, host: Path
) -> None:
    fleet.will(_runs_on(host))
    earlier = _provision(world, create(world, instances=[world.web], admin_rights=True))
    assert earlier.status == GrantStatus.READY
    snapshot = _sudoers_of(host, earlier.username)
    assert list(snapshot) == [f"passport-{earlier.username}-{earlier.uid}"]
    services.access_request_complete(access_request=earlier.request, actor=world.requester)
    fleet.will(_runs_on(host))
    services.grant_deprovision(grant_id=earlier.pk)
    assert _sudoers_of(host, earlier.username) == {}
    # The host is restored from a snapshot taken while the earlier grant was live.
    for name, text in snapshot.items():
        (host / "etc" / "sudoers.d" / name).write_text(text)

    fleet.will(_runs_on(host))
    later = _provision(world, create(world, instances=[world.web], admin_rights=False))

    assert later.status == GrantStatus.READY
    assert _sudoers_of(host, later.username) == {}
