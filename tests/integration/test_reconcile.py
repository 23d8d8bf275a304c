"""Reconciliation against devcloud's local hosts: orphans go, everything else stays."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import Instance, SweepFailure
from requests_app.services.reconcile import reconcilable_instances
from tests.stack import Cloud

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]


def test_orphans_are_removed_and_other_accounts_left_alone(prod: AwsAccount, aws: Cloud) -> None:
    setup = (
        "getent group passport-users >/dev/null || groupadd --system passport-users; "
        "useradd -m -G passport-users rs-orphanaa; "  # ours, but no grant accounts for it
        "useradd -m rs-localaaa; "  # same shape, not in the marker group: never ours
        "useradd -m -G passport-users operator1"  # in the group but not a Passport name
    )
    assert aws.run_in_host("db-1", ["bash", "-c", setup]).returncode == 0
    result = services.reconcile_account(account=prod)
    assert "rs-orphanaa@" + aws.instance_id("db-1") in result.orphans_removed
    users = aws.host_users("db-1")
    assert "rs-orphanaa" not in users
    assert {"rs-localaaa", "operator1"} <= users
    assert not result.errors
    # Only reachable Linux hosts are asked: Windows, offline, old-agent ones wait for later.
    assert result.checked == Instance.objects.filter(account=prod, platform="linux", ping_status="Online").count()
    assert LogbookEntry.objects.filter(action="reconcile.orphan_removed", detail__username="rs-orphanaa").exists()
    again = services.reconcile_account(account=prod)
    assert again.orphans_removed == []
    aws.run_in_host("db-1", ["bash", "-c", "userdel -r rs-localaaa; userdel -r operator1"])


def test_a_host_that_fails_is_flagged_and_backs_off_while_the_others_are_reconciled(
    prod: AwsAccount, aws: Cloud
) -> None:
    # The first host checked fails in the portal's own handling: the database refuses to record
    # it as reconciled (as a broken row or a constraint would). The hosts after it still count.
    instances = list(reconcilable_instances(prod))
    poison = instances[0]
    target = "db-1" if poison.name != "db-1" else "web-1"
    setup = (
        "getent group passport-users >/dev/null || groupadd --system passport-users; "
        "useradd -m -G passport-users rs-orphanbb"
    )
    assert aws.run_in_host(target, ["bash", "-c", setup]).returncode == 0
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION passport_test_poison() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.id = {poison.pk} AND NEW.reconciled_at IS DISTINCT FROM OLD.reconciled_at "
            "THEN RAISE EXCEPTION 'poisoned host'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER passport_test_poison BEFORE UPDATE ON requests_app_instance "
            "FOR EACH ROW EXECUTE FUNCTION passport_test_poison()"
        )
    try:
        result = services.reconcile_account(account=prod)
        assert "rs-orphanbb@" + aws.instance_id(target) in result.orphans_removed
        assert "rs-orphanbb" not in aws.host_users(target)
        assert "poisoned host" in result.errors[poison.instance_id] and len(result.errors) == 1
        assert "poisoned host" in Instance.objects.get(pk=poison.pk).reconcile_error  # the inventory page shows it
        failure = SweepFailure.objects.get(kind=SweepFailure.Kind.RECONCILE, key=str(poison.pk))
        assert failure.failures == 1
        flags = LogbookEntry.objects.filter(action="sweep.failed", instance_ids__contains=poison.instance_id)
        assert flags.count() == 1

        # The next round leaves the failing host out until its backoff is over, and says nothing new.
        again = services.reconcile_account(account=prod)
        assert again.checked == result.checked - 1 and not again.errors
        assert LogbookEntry.objects.filter(action="sweep.failed").count() == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS passport_test_poison ON requests_app_instance")
            cursor.execute("DROP FUNCTION IF EXISTS passport_test_poison()")
