"""A host's refusal to move a grant's account expiry (``EXPIRY_REFUSED``) keeps the grant out of the
expiry sweep only while it is the last answer: a later ordinary failure puts it back in the sweep
(which catches a lost or failed move), and a removed grant no longer shows it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleet import CommandResult, FleetError
from requests_app import services
from requests_app.models import Grant, GrantStatus
from requests_app.services.provisioning.expiry import EXPIRY_REFUSED
from tests.conftest import World
from tests.fakes.fleet import FakeFleet
from tests.requests_app.test_windows_account_sid import SID, _created, _provisioned, _sid_line

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]


def test_a_transient_failure_after_a_refusal_is_swept_again(world: World, fleet: FakeFleet) -> None:
    access_request, grant_id = _provisioned(world, world.windows, _created(stdout=_sid_line(SID)), fleet)
    access_request.refresh_from_db()
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))
    username = Grant.objects.get(pk=grant_id).username
    refusal = f"refusing: the account {SID} made as {username} was renamed; expiry not moved"
    fleet.will(CommandResult(command_id="cmd-ext", status="Failed", exit_code=3, stdout="", stderr=refusal))
    services.grant_sync_account_expiry(grant_id=grant_id)
    assert Grant.objects.get(pk=grant_id).last_error.startswith(EXPIRY_REFUSED)

    # The operator puts the account right; the next extension asks once more, but the host's agent
    # is away just then (an ordinary failure, retried by the task a few times, then the sweep's).
    access_request.refresh_from_db()
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    fleet.will(FleetError("Run Command cmd-x on i-win timed out"))
    assert services.grant_sync_account_expiry(grant_id=grant_id).retry_in  # a transient failure: retried

    grant = Grant.objects.get(pk=grant_id)
    assert grant.host_expires_at != grant.request.expires_at  # behind
    # The old refusal no longer keeps it out of the sweep.
    assert grant_id in services.grants_needing_expiry_sync(), grant.last_error


def test_a_removed_grant_no_longer_shows_the_expiry_refusal(world: World, fleet: FakeFleet) -> None:
    access_request, grant_id = _provisioned(world, world.windows, _created(stdout=_sid_line(SID)), fleet)
    access_request.refresh_from_db()
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))
    fleet.will(CommandResult(command_id="cmd-ext", status="Failed", exit_code=3, stdout="", stderr="refusing: renamed"))
    services.grant_sync_account_expiry(grant_id=grant_id)
    # The operator renamed it back; the request is done and the removal deletes the account.
    services.access_request_complete(access_request=access_request, actor=world.requester)
    services.grant_deprovision(grant_id=grant_id)
    grant = Grant.objects.get(pk=grant_id)
    assert grant.status == GrantStatus.REMOVED
    # Its account is gone: it no longer "needs an operator".
    assert not grant.last_error.startswith(EXPIRY_REFUSED), grant.last_error
