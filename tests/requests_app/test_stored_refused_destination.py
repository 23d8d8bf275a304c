"""EC2's own addresses (169.254.169.254 ...) are refused as forward destinations, but an account that
listed one before kept it stored: a grant ready then had permitopen="169.254.169.254:80" on its host's
lines, and its record (key_forward_destinations) still equalled the account's stored list, so its lines
were never found to need rewriting: sshd kept permitting the metadata service (the instance role's
credentials) to a direct login until the grant ended. Migration accounts 0030 takes such entries off
the accounts, after which the lines are rewritten. The same for the names that lead there
(instance-data.ec2.internal ...), refused later: migration accounts 0032."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps

from accounts.models import AwsAccount
from requests_app import services
from requests_app.models import Grant, GrantStatus
from tests.conftest import World
from tests.fakes.fleet import FakeFleet

pytestmark = pytest.mark.usefixtures("service_settings")

METADATA = "169.254.169.254:80"


def test_lines_written_with_a_now_refused_destination_are_rewritten(
    world: World, fake_fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    # Stored before the merge (the validator then took it).
    AwsAccount.objects.filter(pk=world.prod.pk).update(forward_destinations=[METADATA])
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch the kernel"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_provision(grant_id=grant_id)
    grant = Grant.objects.get(pk=grant_id)
    assert grant.status == GrantStatus.READY
    # What a grant provisioned before the merge has on record: the lines carried permitopen for it.
    assert grant.key_forward_destinations == [METADATA]
    assert METADATA not in grant.request.destinations_in_force  # refused now
    assert grant_id not in services.grants_needing_key_refresh(unbound_only=True)  # as it was

    AwsAccount.objects.filter(pk=world.prod.pk).update(forward_destinations=[METADATA, "db.internal:5432"])
    Grant.objects.filter(pk=grant_id).update(key_forward_destinations=[METADATA, "db.internal:5432"])
    migration = importlib.import_module("accounts.migrations.0030_forget_refused_destinations")
    migration.forget_refused_destinations(apps, None)

    assert AwsAccount.objects.get(pk=world.prod.pk).forward_destinations == ["db.internal:5432"]
    assert grant_id in services.grants_needing_key_refresh(unbound_only=True)


@pytest.mark.parametrize(
    "refused",
    ["instance-data.ec2.internal:80", "instance-data:80", "169.254.169.254.nip.io:80", "a9fea9fe.nip.io:80"],
)
def test_lines_written_with_a_now_refused_name_are_rewritten(
    world: World,
    fake_fleet: FakeFleet,
    queued: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
    refused: str,
) -> None:
    # Stored before EC2's metadata names were refused (the validator then took them).
    AwsAccount.objects.filter(pk=world.prod.pk).update(forward_destinations=[refused, "db.internal:5432"])
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch the kernel"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_provision(grant_id=grant_id)
    # What a grant provisioned before has on record: its lines carried permitopen for the name.
    Grant.objects.filter(pk=grant_id).update(key_forward_destinations=[refused, "db.internal:5432"])
    assert refused not in Grant.objects.get(pk=grant_id).request.destinations_in_force  # refused now
    assert grant_id not in services.grants_needing_key_refresh(unbound_only=True)  # as it was

    migration = importlib.import_module("accounts.migrations.0032_forget_metadata_name_destinations")
    migration.forget_refused_destinations(apps, None)

    assert AwsAccount.objects.get(pk=world.prod.pk).forward_destinations == ["db.internal:5432"]
    assert grant_id in services.grants_needing_key_refresh(unbound_only=True)


def test_the_name_migration_keeps_every_other_destination(world: World) -> None:
    kept = ["db.internal:5432", "instance-data.example.com:80", "10-0-12-7.nip.io:5432", "[fd00::5]:6379"]
    AwsAccount.objects.filter(pk=world.prod.pk).update(forward_destinations=kept)
    migration = importlib.import_module("accounts.migrations.0032_forget_metadata_name_destinations")
    migration.forget_refused_destinations(apps, None)
    assert AwsAccount.objects.get(pk=world.prod.pk).forward_destinations == kept
