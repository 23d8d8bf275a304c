"""Reconciliation against devcloud's local hosts: orphans go, everything else stays."""

from __future__ import annotations

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import Instance
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
