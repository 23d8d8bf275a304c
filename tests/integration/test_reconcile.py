"""Reconciliation against devcloud's local hosts: orphans go, everything else stays."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet import CommandResult, fleet_for
from fleet.scripts import render_list_users
from requests_app import services
from requests_app.models import Instance, SweepFailure
from requests_app.services.reconcile import listed_users, reconcilable_instances
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
    # legacy-1 is no local host: devcloud runs no script there and says so. Its host is flagged,
    # never taken for one without orphans.
    legacy = Instance.objects.get(account=prod, name="legacy-1")
    assert set(result.errors) == {legacy.instance_id} and "not a local host" in result.errors[legacy.instance_id]
    legacy.refresh_from_db()
    assert legacy.reconciled_at is None and "not a local host" in legacy.reconcile_error
    # Only reachable Linux hosts are asked: Windows and offline ones wait for later.
    assert result.checked == Instance.objects.filter(account=prod, platform="linux", ping_status="Online").count()
    assert LogbookEntry.objects.filter(action="reconcile.orphan_removed", detail__username="rs-orphanaa").exists()
    again = services.reconcile_account(account=prod)
    assert again.orphans_removed == []
    aws.run_in_host("db-1", ["bash", "-c", "userdel -r rs-localaaa; userdel -r operator1"])


def test_a_host_that_fails_is_flagged_and_backs_off_while_the_others_are_reconciled(
    prod: AwsAccount, aws: Cloud
) -> None:
    # The first local host checked fails in the portal's own handling: the database refuses to
    # record it as reconciled (as a broken row or a constraint would). The hosts after it still count.
    # (legacy-1, no local host, fails too: devcloud runs no script there.)
    instances = list(reconcilable_instances(prod))
    poison = next(instance for instance in instances if instance.name in ("web-1", "db-1"))
    legacy = next(instance for instance in instances if instance.name == "legacy-1")
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
        assert "poisoned host" in result.errors[poison.instance_id]
        assert set(result.errors) == {poison.instance_id, legacy.instance_id}
        assert "poisoned host" in Instance.objects.get(pk=poison.pk).reconcile_error  # the inventory page shows it
        failure = SweepFailure.objects.get(kind=SweepFailure.Kind.RECONCILE, key=str(poison.pk))
        assert failure.failures == 1
        flags = LogbookEntry.objects.filter(action="sweep.failed", instance_ids__contains=poison.instance_id)
        assert flags.count() == 1

        # The next round leaves the failing hosts out until their backoff is over, and says nothing new.
        again = services.reconcile_account(account=prod)
        assert again.checked == result.checked - 2 and not again.errors
        assert LogbookEntry.objects.filter(action="sweep.failed").count() == 2
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS passport_test_poison ON requests_app_instance")
            cursor.execute("DROP FUNCTION IF EXISTS passport_test_poison()")


def _group_members(aws: Cloud, host: str, names: list[str]) -> None:
    """Make ``names`` the marker group's members on ``host`` (members need no account of their own)."""
    setup = (
        "getent group passport-users >/dev/null || groupadd --system passport-users; "
        f"sed -i 's/^\\(passport-users:[^:]*:[^:]*\\):.*$/\\1:{','.join(names)}/' /etc/group"
    )
    assert aws.run_in_host(host, ["bash", "-c", setup]).returncode == 0


def _names(count: int, *, long: bool = False) -> list[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    names = []
    for n in range(count):
        base = "".join(alphabet[(n >> shift) % 32] for shift in (0, 5, 10, 15, 20, 25, 30, 35))
        names.append(f"rs-{base}" + ("-wxyz" if long else ""))
    return names


def test_a_listing_longer_than_the_listing_holds_is_read_whole(prod: AwsAccount, aws: Cloud) -> None:
    """Some 200 users fill the 2,500 bytes ListCommandInvocations keeps of an output: the listing
    is read from GetCommandInvocation instead, whole, with every name."""
    names = _names(250)
    _group_members(aws, "db-1", names)
    try:
        instance = Instance.objects.get(account=prod, name="db-1")
        results = fleet_for(prod).run_script_batch(
            instance_ids=[instance.instance_id], region=instance.region, platform="linux",
            script=render_list_users(), comment="test: list",
        )  # fmt: skip
        listing = results[instance.instance_id]
        assert isinstance(listing, CommandResult) and len(listing.stdout) > 2_500
        assert listed_users(listing) == set(names)
    finally:
        _group_members(aws, "db-1", [])


def test_a_listing_cut_short_is_never_acted_on(prod: AwsAccount, aws: Cloud) -> None:
    """More names than even GetCommandInvocation's 24,000 bytes hold: the list ends in the agent's
    marker or half a name (``rs-xxxxxxxx`` of ``rs-xxxxxxxx-wxyz`` is a name too). Nothing is
    removed, not even a real orphan, and the host is flagged."""
    names = _names(1_500, long=True)  # 17 bytes a line: 25,500
    setup = (
        "getent group passport-users >/dev/null || groupadd --system passport-users; "
        "useradd -m -G passport-users rs-orphandd"
    )
    assert aws.run_in_host("db-1", ["bash", "-c", setup]).returncode == 0
    _group_members(aws, "db-1", ["rs-orphandd", *names])
    instance = Instance.objects.get(account=prod, name="db-1")
    try:
        result = services.reconcile_account(account=prod)
        assert result.orphans_removed == []
        assert "incomplete" in result.errors[instance.instance_id]
        assert "rs-orphandd" in aws.host_users("db-1")
        assert not LogbookEntry.objects.filter(action__startswith="reconcile.orphan").exists()
    finally:
        _group_members(aws, "db-1", [])
        aws.run_in_host("db-1", ["bash", "-c", "userdel -r rs-orphandd"])
        SweepFailure.objects.filter(kind=SweepFailure.Kind.RECONCILE).delete()
