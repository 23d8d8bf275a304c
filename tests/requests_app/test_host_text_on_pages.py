"""Text written by a host or a cloud API (a script's stderr, reconciliation output, the OS name and
agent version the agent reports, a sweep's error, an instance's Name tag in a sentence Passport says)
is shown to requesters, approvers and admins with every hidden character as an escape: root on an
instance, or anyone who may tag it, must not reorder or hide what they read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership
from audit.models import LogbookEntry
from fleet import AccessDecision, FleetError
from requests_app import services
from requests_app.models import Grant, Instance, SweepFailure
from tests.conftest import World
from tests.fakes.fleet import FakeFleet
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db

RLO = "\u202e"
# Reordered by the override and followed by a terminal's clipboard-write escape.
HOSTILE = f"useradd: {RLO}gnp.exe \x1b]52;c;ZXZpbA==\x07"
SHOWN = "useradd: \\u202egnp.exe \\x1b]52;c;ZXZpbA==\\x07"


def _failure(kind: str, key: str) -> None:
    now = timezone.now()
    SweepFailure.objects.create(
        kind=kind,
        key=key,
        first_failed_at=now,
        last_failed_at=now,
        next_attempt_at=now + timedelta(minutes=5),
        last_error=HOSTILE,
    )


def test_the_request_page_shows_a_hosts_error_and_the_expiry_sweeps_error_made_visible(
    world: World, client: Client
) -> None:
    grant = make_active_grant(world)
    Grant.objects.filter(pk=grant.pk).update(last_error=f"Run Command c-1 ended Failed (exit 1): {HOSTILE}")
    _failure(SweepFailure.Kind.EXPIRE, str(grant.request_id))
    client.force_login(world.approver)
    page = client.get(reverse("requests:detail", args=[grant.request_id])).content.decode()
    assert page.count(SHOWN) == 2
    assert RLO not in page and "\x1b" not in page


def test_the_inventory_shows_reconciliation_output_the_os_name_and_sync_errors_made_visible(
    world: World, client: Client
) -> None:
    Instance.objects.filter(pk=world.web.pk).update(
        reconcile_error=f"Run Command c-2 ended Failed (exit 1): {HOSTILE}", platform_name=f"Ubuntu{RLO}\x1b[8m"
    )
    _failure(SweepFailure.Kind.INVENTORY, f"{world.prod.pk}:us-east-1")
    client.force_login(world.approver)
    page = client.get(reverse("requests:inventory")).content.decode()
    assert page.count(SHOWN) == 2
    assert "Ubuntu\\u202e\\x1b[8m" in page
    assert RLO not in page and "\x1b" not in page


# --- sentences built in Python around an instance's Name tag (anyone with ec2:CreateTags writes it) ---

NAME = f"db-2 {RLO}ylno-daer"  # reads "db-2 read-only" once the override has turned it round
NAME_SHOWN = "db-2 \\u202eylno-daer"


def _create(client: Client, world: World, instance: Instance) -> str:
    form = {"account": world.prod.pk, "instances": [instance.pk], "reason": "second", "duration": 60}
    return client.post(reverse("requests:create"), form).content.decode()


def test_the_pickers_problem_lines_show_the_name_tag_and_the_agents_version_made_visible(
    world: World, client: Client
) -> None:
    Instance.objects.filter(pk=world.offline.pk).update(name=NAME)
    Instance.objects.filter(pk=world.legacy.pk).update(agent_version=f"2.3{RLO}\x1b[8m")  # the agent says it
    client.force_login(world.requester)
    page = client.get(reverse("requests:instance_picker"), {"account": world.prod.pk}).content.decode()
    assert f"{world.offline.instance_id} ({NAME_SHOWN}) is not reachable by Systems Manager" in page
    assert "runs SSM Agent 2.3\\u202e\\x1b[8m; Passport needs" in page
    assert RLO not in page and "\x1b" not in page


def test_the_create_forms_refusals_name_the_instance_with_its_name_tag_made_visible(
    world: World, client: Client
) -> None:
    Instance.objects.filter(pk=world.windows.pk).update(name=NAME)
    Instance.objects.filter(pk=world.unmanaged.pk).update(name=NAME)
    world.windows.refresh_from_db()
    earlier = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.windows], reason="first"
    )
    client.force_login(world.requester)

    page = _create(client, world, world.windows)
    assert f"You already have request #{earlier.pk} for {world.windows.instance_id} ({NAME_SHOWN});" in page
    assert RLO not in page
    page = _create(client, world, world.unmanaged)
    assert f"{world.unmanaged.instance_id} ({NAME_SHOWN}) is not managed by AWS Systems Manager." in page
    assert RLO not in page


@pytest.fixture
def iam_answers(world: World, fleet: FakeFleet, settings: Any, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """IAM is asked (the requester has a principal on prod) and answers what the test puts in the list:
    a verdict for every action asked, or a FleetError to raise."""
    settings.PASSPORT_IAM_CHECK = True
    Membership.objects.filter(user=world.requester, account=world.prod).update(
        principal_arn=f"arn:aws:iam::{world.prod.account_id}:user/alice"
    )
    answers: list[object] = []

    def simulate_access(principal_arn: str, questions: dict[str, list[str]], *args: object) -> dict:
        answer = answers[0]
        if isinstance(answer, FleetError):
            raise answer
        return {arn: AccessDecision(dict.fromkeys(actions, str(answer))) for arn, actions in questions.items()}

    monkeypatch.setattr(fleet, "simulate_access", simulate_access, raising=False)
    return answers


def test_an_iam_refusal_names_the_instance_with_its_name_tag_made_visible(
    world: World, client: Client, iam_answers: list[object]
) -> None:
    Instance.objects.filter(pk=world.web.pk).update(name=NAME)
    client.force_login(world.requester)

    iam_answers[:] = ["explicitDeny"]
    page = _create(client, world, world.web)
    assert f"explicitly denies ssm:StartSession on {world.web.instance_id} ({NAME_SHOWN})" in page
    assert RLO not in page
    # AWS's own words when it cannot answer are the cloud's text too.
    iam_answers[:] = [FleetError(f"AccessDenied: {HOSTILE}")]
    page = _create(client, world, world.web)
    assert f"AWS IAM could not confirm your access on {world.prod.name}: AccessDenied: {SHOWN}" in page
    assert RLO not in page and "\x1b" not in page


def test_a_failed_inventory_sync_says_why_made_visible_and_the_logbook_keeps_it_as_it_came(
    world: World, client: Client, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def describe(region: str) -> list[object]:
        raise FleetError(HOSTILE)

    monkeypatch.setattr(fleet, "describe", describe)
    client.force_login(world.approver)
    page = client.post(reverse("requests:inventory_sync", args=[world.prod.pk]), follow=True).content.decode()
    assert f"Sync of {world.prod.name} failed: {SHOWN}" in page
    assert RLO not in page and "\x1b" not in page
    entry = LogbookEntry.objects.get(action="inventory.sync_failed")
    assert entry.detail["errors"] == [HOSTILE]
