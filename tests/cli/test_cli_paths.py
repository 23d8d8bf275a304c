"""The CLI's everyday paths a newcomer meets: instance Names in `requests create`, the EXPIRES
column of ended requests, and `requests list | head` (a reader that goes away early)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.cli.conftest import ROOT, Cli
from tests.factories import make_account, make_instance, make_membership, make_user

pytestmark = pytest.mark.usefixtures("live_db")


def test_requests_create_takes_instance_names_and_refuses_unclear_ones(cli: Cli) -> None:
    alice = make_user("alice")
    prod = make_account()
    make_membership(alice, prod, "admin")
    web = make_instance(prod, "web-1")
    make_instance(prod, "web-10")  # found by the portal's search for "web-1", but not named so
    db = make_instance(prod, "db-1")
    twins = [make_instance(prod, "twin"), make_instance(prod, "twin")]
    assert cli.login(alice).returncode == 0

    created = cli.json(
        "requests", "create", "--account", prod.account_id, "-i", "web-1", "-i", db.instance_id, "--reason", "by name"
    )
    assert sorted(g["instance_id"] for g in created["grants"]) == sorted([web.instance_id, db.instance_id])

    ambiguous = cli.run("requests", "create", "--account", prod.account_id, "-i", "twin", "--reason", "x")
    assert ambiguous.returncode == 2, ambiguous.stderr
    assert "'twin' names 2 instances" in ambiguous.stderr
    assert all(twin.instance_id in ambiguous.stderr for twin in twins)
    unknown = cli.run("requests", "create", "--account", prod.account_id, "-i", "nope-1", "--reason", "x")
    assert unknown.returncode == 4, unknown.stderr
    assert "No instance named 'nope-1'" in unknown.stderr
    assert AccessRequest.objects.count() == 1


def test_ended_requests_show_when_they_ended_not_their_planned_end(cli: Cli) -> None:
    alice = make_user("alice")
    prod = make_account()
    make_membership(alice, prod, "admin")
    ended = services.access_request_create(
        requester=alice, account=prod, instances=[make_instance(prod, "web-1")], reason="done early"
    )
    # Ended at 10:07 of a day, although planned to last until 11:00 (its end as the portal records it).
    planned, finished = _at(11, 0), _at(10, 7)
    AccessRequest.objects.filter(pk=ended.pk).update(
        status=RequestStatus.COMPLETED, activated_at=_at(10, 0), expires_at=planned, ended_at=finished
    )
    assert cli.login(alice).returncode == 0

    listing = cli.run("requests", "list", check=True).stdout
    row = next(line for line in listing.splitlines() if line.startswith(str(ended.pk)))
    assert f"ended {timezone.localtime(finished):%Y-%m-%d %H:%M}" in row
    assert f"{timezone.localtime(planned):%H:%M}" not in row


def test_requests_list_into_a_reader_that_stops_early_ends_quietly(cli: Cli) -> None:
    alice = make_user("alice")
    prod = make_account()
    make_membership(alice, prod, "admin")
    web = make_instance(prod, "web-1")
    services.access_request_create(requester=alice, account=prod, instances=[web], reason="one")
    assert cli.login(alice).returncode == 0

    for args in (["requests", "list"], ["requests", "list", "--json"]):
        # `passport requests list | head -0`: the reader is gone before passport writes.
        listing = subprocess.Popen(
            [sys.executable, "-m", "passport_cli", *args],
            cwd=ROOT, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert listing.stdout is not None and listing.stderr is not None
        listing.stdout.close()
        stderr = listing.stderr.read().decode()
        assert listing.wait(timeout=60) == 141, stderr
        assert stderr == ""


def _at(hour: int, minute: int) -> datetime:
    today = timezone.localtime().replace(hour=hour, minute=minute, second=0, microsecond=0)
    return today - timedelta(days=1)
