"""A Windows grant keeps its account's SID, and its removal goes by it.

A user with administrator rights may rename its own account; a removal that looked for the grant's
name found nothing and the grant was called removed while the account stayed. The create script
names the account's SID: the portal reads it strictly, keeps it on the grant, and gives it to the
removal, which finds the account by it. What the removal leaves (renamed, or another account of the
grant's name) waits for an operator as an unmarked account does; on a domain controller the computer
accounts it deleted on the way are named in the Logbook, and a later try, once an operator deleted the
account, is still given the SID to find the rest by.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import LogbookEntry
from fleet import CommandResult
from fleet.scripts import REMOVAL_REFUSED_EXIT_CODE
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services.provisioning import Outcome
from requests_app.services.provisioning.expiry import EXPIRY_REFUSED
from requests_app.services.provisioning.remove import NEEDS_OPERATOR_PREFIX
from tests.conftest import World
from tests.factories import make_instance, make_user
from tests.fakes.fleet import FakeFleet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

SID = "S-1-5-21-3623811015-3361044348-30300820-1013"


def _created(command_id: str = "cmd-create", *, stdout: str) -> CommandResult:
    return CommandResult(command_id=command_id, status="Success", exit_code=0, stdout=stdout, stderr="")


def _sid_line(sid: str) -> str:
    return f"passport: account sid: {sid}\r\n"


def _provisioned(
    world: World, instance: Instance, create: CommandResult, fleet: FakeFleet, *, outcome: Outcome | None = None
) -> tuple[AccessRequest, int]:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[instance], reason="patch"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    fleet.will(create)
    assert services.grant_provision(grant_id=grant_id) == (outcome or Outcome())
    return access_request, grant_id


def _dc(world: World) -> Instance:
    return make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)


def _grant_sid_line(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip().startswith("$grantSid =")]


@pytest.mark.parametrize("domain_controller", [False, True], ids=["member-server", "domain-controller"])
def test_the_sid_a_create_reports_is_kept_and_given_to_the_removal(
    world: World, fleet: FakeFleet, domain_controller: bool
) -> None:
    host = _dc(world) if domain_controller else world.windows
    access_request, grant_id = _provisioned(
        world, host, _created(stdout=_sid_line(SID) + "passport: rs-x ready\r\n"), fleet
    )

    made = Grant.objects.get(pk=grant_id)
    assert (made.status, made.account_sid) == (GrantStatus.READY, SID)
    ready = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.ready")
    assert ready.detail["account_sid"] == SID

    services.access_request_complete(access_request=access_request, actor=world.requester)
    services.grant_deprovision(grant_id=grant_id)
    assert _grant_sid_line(fleet.calls[-1]["script"]) == [f"$grantSid = '{SID}'"]


@pytest.mark.parametrize(
    "stdout",
    [
        "passport: rs-x ready\r\n",  # none named
        "",
        _sid_line(SID + "'; Remove-LocalUser Administrator; '"),
        _sid_line("S-1-5-32-544"),
        _sid_line("S-1-5-21-1-2-3-500"),
        _sid_line(SID) + _sid_line("S-1-5-21-1-2-3-1001"),
        _sid_line(SID + "\u202e\n"),
    ],
    ids=["none", "empty", "hostile", "a-group", "builtin-administrator", "two", "bidi-newline"],
)
def test_a_create_that_names_no_valid_sid_fails_the_grant_for_good_and_its_removal_goes_by_the_name(
    world: World, fleet: FakeFleet, stdout: str
) -> None:
    """Every create script of this release names the SID: without it the grant is not made ready
    (its account could not be told from another of its name), and what it made goes with the grant."""
    access_request, grant_id = _provisioned(world, world.windows, _created(stdout=stdout), fleet)

    made = Grant.objects.get(pk=grant_id)
    assert made.ready_at is None and made.account_sid is None
    assert "without naming the account's SID" in made.last_error
    assert "Remove-LocalUser" not in made.last_error and "\u202e" not in made.last_error
    assert not LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.ready").exists()
    failed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.failed")
    assert "without naming the account's SID" in failed.detail["error"]
    # Its only grant failed for good: the request failed, and the grant is queued for removal.
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.FAILED
    assert made.status == GrantStatus.REMOVING
    assert made.password_sealed is None

    services.grant_deprovision(grant_id=grant_id)
    script = fleet.calls[-1]["script"]
    # By the name, as a grant never ready: an account of that name without the marker is left alone.
    assert _grant_sid_line(script) == ["$grantSid = ''"]
    assert "$madeByGrant = 'no' -eq 'yes'" in script
    assert "Administrator; '" not in script and "S-1-5-32-544" not in script and SID not in script
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVED


def test_a_create_whose_output_systems_manager_cut_is_tried_again(world: World, fleet: FakeFleet) -> None:
    """The line may have been in the part of the output Systems Manager did not keep."""
    cut = CommandResult(
        command_id="cmd-cut", status="Success", exit_code=0, stdout="x" * 100, stderr="", truncated=True
    )
    access_request, grant_id = _provisioned(world, world.windows, cut, fleet, outcome=Outcome(retry_in=5))

    waiting = Grant.objects.get(pk=grant_id)
    assert (waiting.status, waiting.account_sid) == (GrantStatus.PENDING, None)
    assert "without naming the account's SID" in waiting.last_error
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.PROVISIONING


def test_a_grant_made_ready_before_creates_reported_a_sid_is_still_removed_by_its_name(
    world: World, fleet: FakeFleet
) -> None:
    """A grant an older release made ready (its create wrote no SID, and the portal kept none)."""
    access_request, grant_id = _provisioned(world, world.windows, _created(stdout=_sid_line(SID)), fleet)
    Grant.objects.filter(pk=grant_id).update(account_sid=None)
    services.access_request_complete(access_request=access_request, actor=world.requester)

    services.grant_deprovision(grant_id=grant_id)

    script = fleet.calls[-1]["script"]
    assert _grant_sid_line(script) == ["$grantSid = ''"]
    assert "$madeByGrant = 'yes' -eq 'yes'" in script
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVED


@pytest.mark.parametrize("domain_controller", [False, True], ids=["member-server", "domain-controller"])
def test_an_extension_finds_the_account_by_the_sid_its_create_reported(
    world: World, fleet: FakeFleet, domain_controller: bool
) -> None:
    host = _dc(world) if domain_controller else world.windows
    access_request, grant_id = _provisioned(world, host, _created(stdout=_sid_line(SID)), fleet)
    access_request.refresh_from_db()
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))

    assert services.grant_sync_account_expiry(grant_id=grant_id) == Outcome()

    script = fleet.calls[-1]["script"]
    assert "AccountExpir" in script and "Get-SSMParameter" not in script
    assert _grant_sid_line(script) == [f"$grantSid = '{SID}'"]


def test_an_extension_refused_for_a_renamed_account_is_on_record_and_moves_nothing(
    world: World, fleet: FakeFleet
) -> None:
    access_request, grant_id = _provisioned(world, world.windows, _created(stdout=_sid_line(SID)), fleet)
    before = Grant.objects.get(pk=grant_id).host_expires_at
    access_request.refresh_from_db()
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))
    username = Grant.objects.get(pk=grant_id).username
    refusal = f"refusing: the account {SID} made as {username} was renamed; expiry not moved"
    fleet.will(CommandResult(command_id="cmd-ext", status="Failed", exit_code=3, stdout="", stderr=refusal))

    # Refused for good: not retried, and not asked again by the sweep every round (an entry each
    # time) but shown on the grant for an operator; the next extension asks once more.
    assert services.grant_sync_account_expiry(grant_id=grant_id) == Outcome()

    grant = Grant.objects.get(pk=grant_id)
    assert grant.host_expires_at == before
    assert grant.last_error.startswith(EXPIRY_REFUSED) and refusal in grant.last_error
    failed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.expiry_move_failed")
    assert refusal in failed.detail["error"] and failed.detail["command_id"] == "cmd-ext"
    assert failed.detail["needs_operator"] is True
    assert not LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.expiry_moved").exists()
    assert grant_id not in services.grants_needing_expiry_sync()

    # Put right on the host (renamed back): the next extension moves it, and the grant is clear.
    access_request.refresh_from_db()
    services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=1))
    fleet.will(CommandResult(command_id="cmd-ext2", status="Success", exit_code=0, stdout="", stderr=""))
    assert services.grant_sync_account_expiry(grant_id=grant_id) == Outcome()
    grant.refresh_from_db()
    assert grant.last_error == "" and grant.host_expires_at != before


def test_a_linux_grant_keeps_no_sid_whatever_its_output_says(world: World, fleet: FakeFleet) -> None:
    _, grant_id = _provisioned(world, world.web, _created(stdout=_sid_line(SID)), fleet)
    assert Grant.objects.get(pk=grant_id).account_sid is None


def _left(command_id: str, stdout: str = "", stderr: str = "") -> CommandResult:
    return CommandResult(
        command_id=command_id, status="Failed", exit_code=REMOVAL_REFUSED_EXIT_CODE, stdout=stdout, stderr=stderr
    )


def test_a_renamed_account_waits_for_an_operator_with_its_sid_and_its_computer_accounts_named(
    world: World, fleet: FakeFleet
) -> None:
    access_request, grant_id = _provisioned(world, _dc(world), _created(stdout=_sid_line(SID)), fleet)
    username = Grant.objects.get(pk=grant_id).username
    services.access_request_complete(access_request=access_request, actor=world.requester)

    fleet.will(
        _left(
            "cmd-rm-left",
            stdout="passport: deleted computer account: EVIL01$\r\n",
            stderr=f"passport: the account {SID} made as {username} was left here, disabled: it was renamed",
        )
    )
    assert services.grant_deprovision(grant_id=grant_id).retry_in

    left = Grant.objects.get(pk=grant_id)
    assert left.status == GrantStatus.REMOVING
    assert left.last_error.startswith(NEEDS_OPERATOR_PREFIX)
    # The operator is told which account to look for: by its SID, since its name may be another now.
    assert f"the account {username} (SID {SID}) was left on the host, disabled" in left.last_error
    assert "renamed" in left.last_error
    refused = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removal_refused")
    assert refused.detail["computer_accounts_deleted"] == 1
    assert refused.detail["computer_account_names"] == ["EVIL01$"]
    assert refused.detail["account_sid"] == SID

    # Another try that leaves it again is not written again, unless it deleted computer accounts.
    fleet.will(_left("cmd-rm-again"), _left("cmd-rm-more", stdout="passport: deleted computer account: EVIL03$\r\n"))
    for _ in range(2):
        Grant.objects.filter(pk=grant_id).update(next_attempt_at=None)
        assert services.grant_deprovision(grant_id=grant_id).retry_in
    refusals = LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removal_refused").order_by("id")
    assert [entry.detail["command_id"] for entry in refusals] == ["cmd-rm-left", "cmd-rm-more"]
    assert refusals.last().detail["computer_account_names"] == ["EVIL03$"]  # type: ignore[union-attr]

    # An operator deleted the account: the next try is still given the SID, and the computer accounts
    # it finds by it (made meanwhile, or missed) are deleted and named with the removal.
    fleet.will(
        _created("cmd-rm-after", stdout="passport: deleted computer account: EVIL02$\r\npassport: x removed\r\n")
    )
    Grant.objects.filter(pk=grant_id).update(next_attempt_at=None)  # its back-off waited out
    calls = len(fleet.calls)
    assert services.grant_deprovision(grant_id=grant_id) == Outcome()
    assert len(fleet.calls) == calls + 1
    assert _grant_sid_line(fleet.calls[-1]["script"]) == [f"$grantSid = '{SID}'"]
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVED
    removed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.removed")
    assert removed.detail["computer_account_names"] == ["EVIL02$"]
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED


def test_a_stored_sid_that_is_no_longer_valid_never_reaches_a_script(world: World, fleet: FakeFleet) -> None:
    """Written by hand, or by a bug: the removal is not sent, and fails (retried) saying why."""
    access_request, grant_id = _provisioned(world, world.windows, _created(stdout=_sid_line(SID)), fleet)
    Grant.objects.filter(pk=grant_id).update(account_sid="S-1-5-21-1-2-3-1001'; logoff 1; '")
    services.access_request_complete(access_request=access_request, actor=world.requester)
    sent = len(fleet.calls)

    outcome: Any = services.grant_deprovision(grant_id=grant_id)

    assert outcome.retry_in
    assert len(fleet.calls) == sent
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.REMOVING


# --- the SID is shown: the request page and the admin -------------------------------------------

# Written by hand or by a bug (the portal keeps only a checked SID): shown as any value is, escaped.
HOSTILE_SID = "S-1-5-21-1-2-3-1001<script>alert(1)</script>\u202e\n\"'"


def test_the_request_page_shows_the_accounts_sid_on_its_grants_row_escaped(world: World, fleet: FakeFleet) -> None:
    access_request, grant_id = _provisioned(world, world.windows, _created(stdout=_sid_line(SID)), fleet)
    client = Client()
    client.force_login(world.requester)

    page = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    row = page[page.index(f'<tr data-instance="{world.windows.instance_id}">') :]
    row = row[: row.index("</tr>")]
    assert f'<div class="muted" data-testid="account-sid">SID {SID}</div>' in row

    Grant.objects.filter(pk=grant_id).update(account_sid=HOSTILE_SID)
    page = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    assert "<script>alert(1)" not in page and "\u202e" not in page
    assert "SID S-1-5-21-1-2-3-1001&lt;script&gt;alert(1)&lt;/script&gt;\\u202e\\x0a&quot;&#x27;" in page


def test_a_grant_without_a_sid_shows_none(world: World, fleet: FakeFleet) -> None:
    access_request, _ = _provisioned(world, world.web, _created(stdout="passport: ready\n"), fleet)
    client = Client()
    client.force_login(world.requester)
    page = client.get(reverse("requests:detail", args=[access_request.pk])).content.decode()
    assert 'data-testid="account-sid"' not in page


def test_the_admin_shows_a_grants_sid_read_only_and_escaped(world: World, fleet: FakeFleet) -> None:
    _, grant_id = _provisioned(world, world.windows, _created(stdout=_sid_line(SID)), fleet)
    Grant.objects.filter(pk=grant_id).update(account_sid=HOSTILE_SID)
    client = Client()
    client.force_login(make_user("root", is_superuser=True, is_staff=True))

    for url in ("/admin/requests_app/grant/", f"/admin/requests_app/grant/{grant_id}/change/"):
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        assert "S-1-5-21-1-2-3-1001&lt;script&gt;alert(1)&lt;/script&gt;\\u202e\\x0a&quot;&#x27;" in page, url
        assert "<script>alert(1)" not in page and "\u202e" not in page
    change = client.get(f"/admin/requests_app/grant/{grant_id}/change/").content.decode()
    assert 'name="account_sid"' not in change and 'name="status"' not in change  # read-only
    assert "password_sealed" not in change
    # Never added, changed or deleted there: every change of a grant is a service's.
    assert client.get("/admin/requests_app/grant/add/").status_code == 403
    assert client.post(f"/admin/requests_app/grant/{grant_id}/change/", {"status": "removed"}).status_code == 403
    assert client.post(f"/admin/requests_app/grant/{grant_id}/delete/", {"post": "yes"}).status_code == 403
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.READY
    assert not LogbookEntry.objects.filter(action__startswith="admin.", detail__model="requests_app.grant").exists()
