"""`passport requests cancel ID` against a live portal: a person withdraws their own request from the
CLI, as the page and the API let them; `complete` on a pending request, and `cancel` on one already
provisioned, point to the other command; refusals keep the exit codes of `complete` and `extend`.
Also the usage of `requests create` and its --duration range, as the CLI shows them."""

from __future__ import annotations

import pytest

from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.cli.conftest import Cli
from tests.cli.helpers import active_grant
from tests.factories import make_account, make_instance, make_membership, make_user

pytestmark = pytest.mark.usefixtures("live_db")

DURATION_RANGE = "Access lasts at least 15 minutes and at most 12 hours, extensions included (15 to 720 minutes)."


def test_a_pending_request_is_withdrawn_with_cancel_and_complete_points_there(cli: Cli) -> None:
    alice, bob, approver = make_user("alice"), make_user("bob"), make_user("approver")
    prod = make_account()
    make_membership(alice, prod, "admin")
    make_membership(bob, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    make_instance(prod, "web-1")
    db = make_instance(prod, "db-1")
    assert cli.login(alice).returncode == 0

    created = cli.json("requests", "create", "--account", prod.account_id, "-i", "web-1", "--reason", "hotfix")
    number = created["id"]
    assert created["status"] == "pending"

    # `complete` refuses a pending request, as before (exit 5), and says what withdraws it.
    refused = cli.run("requests", "complete", str(number))
    assert refused.returncode == 5, refused.stderr
    assert f"Request #{number} is pending approval; it cannot be completed." in refused.stderr
    assert f"Withdraw it with `passport requests cancel {number}`." in refused.stderr
    assert AccessRequest.objects.get(pk=number).status == RequestStatus.PENDING

    cancelled = cli.run("requests", "cancel", str(number))
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"Request {number}: ") and "(cancelled)" in cancelled.stdout
    assert AccessRequest.objects.get(pk=number).status == RequestStatus.CANCELLED
    assert LogbookEntry.objects.filter(action="request.cancelled", request_id=number, actor=alice).exists()

    # Again (a retry): the portal answers with the cancelled request, and writes nothing more down.
    again = cli.run("requests", "cancel", str(number))
    assert again.returncode == 0 and "(cancelled)" in again.stdout, again.stderr
    assert LogbookEntry.objects.filter(action="request.cancelled", request_id=number).count() == 1
    # Decided already: the portal's refusal, exit 5, and no hint (nothing else ends it).
    rejected = services.access_request_create(requester=alice, account=prod, instances=[db], reason="no")
    services.access_request_reject(access_request=rejected, approver=approver, note="not now")
    late = cli.run("requests", "cancel", str(rejected.pk))
    assert late.returncode == 5, late.stderr
    assert late.stderr == f"passport: Request #{rejected.pk} is rejected; it cannot be cancelled.\n"
    # None such, or another person's the person cannot see: exit 4, as `complete` and `extend`.
    assert cli.run("requests", "cancel", "999999").returncode == 4
    bobs = services.access_request_create(requester=bob, account=prod, instances=[db], reason="bob's")
    not_yours = cli.run("requests", "cancel", str(bobs.pk))
    assert not_yours.returncode == 4 and "Not found" in not_yours.stderr, not_yours.stderr
    assert AccessRequest.objects.get(pk=bobs.pk).status == RequestStatus.PENDING

    # An approver sees the request but may not withdraw it: the portal says whose it is, exit 5.
    assert cli.login(approver).returncode == 0
    forbidden = cli.run("requests", "cancel", str(bobs.pk))
    assert forbidden.returncode == 5, forbidden.stderr
    assert "Only the requester can cancel a request." in forbidden.stderr
    assert AccessRequest.objects.get(pk=bobs.pk).status == RequestStatus.PENDING

    # --json: the request as the portal answers it.
    assert cli.login(alice).returncode == 0
    second = cli.json("requests", "create", "--account", prod.account_id, "-i", db.instance_id, "--reason", "again")
    assert cli.json("requests", "cancel", str(second["id"]))["status"] == "cancelled"


def test_a_provisioned_request_is_not_cancelled_and_cancel_points_to_complete(cli: Cli) -> None:
    access_request = active_grant(cli, "record").request

    refused = cli.run("requests", "cancel", str(access_request.pk))
    assert refused.returncode == 5, refused.stderr
    assert "Provisioning has started; complete the request instead" in refused.stderr
    assert f"End it with `passport requests complete {access_request.pk}`." in refused.stderr
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE


def test_requests_usage_and_the_duration_range(cli: Cli) -> None:
    helped = cli.run("requests", "cancel", "--help")
    assert helped.returncode == 0 and "usage: passport requests cancel" in helped.stdout
    assert "cancel" in cli.run("requests", "--help", check=True).stdout

    # An option `create` does not take: `create`'s usage, not the top level's (exit 2).
    wrong = cli.run("requests", "create", "--account", "111111111111", "-i", "web-1", "-r", "x", "--hours", "13")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("usage: passport requests create"), wrong.stderr
    assert "passport requests create: error: unrecognized arguments: --hours 13" in wrong.stderr
    bogus = cli.run("requests", "cancel", "3", "--bogus")
    assert bogus.returncode == 2 and bogus.stderr.startswith("usage: passport requests cancel"), bogus.stderr
    top = cli.run("--bogus", "requests", "list")
    assert top.returncode == 2 and top.stderr.startswith("usage: passport [-h]"), top.stderr

    alice = make_user("alice")
    prod = make_account()
    make_membership(alice, prod, "admin")
    make_instance(prod, "web-1")
    assert cli.login(alice).returncode == 0
    # Below the least, zero, negative, past the most: the one message naming the range (exit 5).
    for minutes in ("-5", "0", "14", "721", "99999999"):
        asked = ("--account", prod.account_id, "-i", "web-1", "-r", "x", "--duration", minutes)
        out = cli.run("requests", "create", *asked)
        assert out.returncode == 5, (minutes, out.stderr)
        assert out.stderr.strip() == f"passport: duration_minutes: {DURATION_RANGE}", (minutes, out.stderr)
    assert not AccessRequest.objects.exists()
