"""A rolling deploy: the new release's migrations run while the old release's web processes and
workers still write, with the models they know. A column the old code does not know gets its value
from the database (``db_default``, or for a grant's platform its instance's), never a NOT NULL error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.upgrade.helpers import migrate, migrate_to_latest, state_apps

ACCOUNTS_LATEST = ("accounts", "0018_token_idp_slug")


@pytest.fixture
def committed(transactional_db: None) -> Iterator[None]:
    yield
    migrate_to_latest()


def _request_and_instance(apps: Any, platform: str = "linux") -> tuple[Any, Any]:
    User = apps.get_model("accounts", "User")
    AwsAccount = apps.get_model("accounts", "AwsAccount")
    AccessRequest = apps.get_model("requests_app", "AccessRequest")
    Instance = apps.get_model("requests_app", "Instance")
    user = User.objects.create(username="olduser")
    account = AwsAccount.objects.create(
        account_id="123456789012", name="a", role_arn="arn:aws:iam::123456789012:role/x"
    )
    instance = Instance.objects.create(account=account, instance_id="i-0123", region="eu-west-1", platform=platform)
    return AccessRequest.objects.create(requester=user, account=account, reason="r"), instance


@pytest.mark.parametrize("platform", ["linux", "windows"])
def test_old_code_makes_a_grant_of_its_instance_platform(committed: None, platform: str) -> None:
    """The release before requests_app 0015 makes grants without a platform; the grant gets its
    instance's (as 0015 gave the grants made before it), so new workers run its scripts as they were made."""
    from requests_app.models import Grant

    old = state_apps([("requests_app", "0014_request_aws_account_id"), ACCOUNTS_LATEST])
    request, instance = _request_and_instance(old, platform)
    made = old.get_model("requests_app", "Grant").objects.create(
        request=request, instance=instance, username="rs-abcdefgh"
    )
    assert Grant.objects.get(pk=made.pk).platform == platform


def test_new_code_keeps_the_platform_it_gives(committed: None) -> None:
    """The platform is the one the request was made for, even when the inventory says otherwise now."""
    from requests_app.models import Grant

    new = state_apps([("requests_app", "0016_rolling_deploy_db_defaults"), ACCOUNTS_LATEST])
    request, instance = _request_and_instance(new, "windows")
    made = new.get_model("requests_app", "Grant").objects.create(
        request=request, instance=instance, username="rs-abcdefgh", platform="linux"
    )
    assert Grant.objects.get(pk=made.pk).platform == "linux"


def test_old_code_makes_a_request_without_an_aws_account_id(committed: None) -> None:
    """Before requests_app 0014 a request did not record its AWS account id: it is "" (not known), and
    provisioning acts in the account's AWS account as the old code did (provisioning.common.request_fleet)."""
    from requests_app.models import AccessRequest

    old = state_apps([("requests_app", "0013_grant_key_ca_fingerprints"), ACCOUNTS_LATEST])
    request, _ = _request_and_instance(old)
    assert AccessRequest.objects.get(pk=request.pk).aws_account_id == ""


def test_old_code_records_a_receipt_as_claimed_and_sent(committed: None) -> None:
    """Before accounts 0016 a receipt was written as the send began: one attempt, claimed when written
    (as 0016 took the receipts made before it)."""
    from accounts.models import NotificationReceipt

    old = state_apps([("accounts", "0015_saml_name_id_key")])
    made = old.get_model("accounts", "NotificationReceipt").objects.create(kind="approved", request_id=7)
    receipt = NotificationReceipt.objects.get(pk=made.pk)
    assert receipt.attempts == 1
    assert receipt.claimed_at is not None and receipt.sent_at is not None
    assert abs((receipt.claimed_at - receipt.sent_at).total_seconds()) < 60


def test_old_code_makes_a_grant_with_no_failed_removal(committed: None) -> None:
    """Before requests_app 0018 a grant did not count its failed removal tries: it starts at none."""
    from requests_app.models import Grant

    old = state_apps([("requests_app", "0017_request_newest_index"), ACCOUNTS_LATEST])
    request, instance = _request_and_instance(old)
    made = old.get_model("requests_app", "Grant").objects.create(
        request=request, instance=instance, username="rs-abcdefgh", platform="linux"
    )
    assert Grant.objects.get(pk=made.pk).cleanup_failures == 0


def test_0018_counts_the_failed_removals_the_logbook_names(committed: None) -> None:
    """A grant's failures before 0018 are the highest try its removal entries name, so the counter of
    failed removals does not go down at the upgrade (it counted those entries)."""
    from audit.services import logbook_append
    from requests_app.models import Grant

    old = migrate([("requests_app", "0017_request_newest_index")])
    request, instance = _request_and_instance(old)
    OldGrant = old.get_model("requests_app", "Grant")
    failing = OldGrant.objects.create(request=request, instance=instance, username="rs-abcdefgh", platform="linux")
    other = old.get_model("requests_app", "Instance").objects.create(
        account=instance.account, instance_id="i-0456", region="eu-west-1", platform="linux"
    )
    quiet = OldGrant.objects.create(request=request, instance=other, username="rs-abcdefgh", platform="linux")
    for action, attempt in (("grant.remove_retry", 1), ("grant.removal_stuck", 24), ("grant.remove_retry", 96)):
        logbook_append(
            action=action,
            actor=None,
            request_id=request.pk,
            instance_ids=[instance.instance_id],
            detail={"attempt": attempt, "error": "not connected"},
        )
    logbook_append(action="grant.removed", actor=None, request_id=request.pk, instance_ids=[other.instance_id])

    migrate_to_latest()
    assert Grant.objects.get(pk=failing.pk).cleanup_failures == 96
    assert Grant.objects.get(pk=quiet.pk).cleanup_failures == 0


def test_old_code_makes_a_grant_without_an_account_sid(committed: None) -> None:
    """Before requests_app 0021 a Windows grant did not keep its account's SID: it has none, and its
    removal goes by the account's name, as the old code's did."""
    from requests_app.models import Grant

    old = state_apps([("requests_app", "0020_request_active_credentials_index"), ACCOUNTS_LATEST])
    request, instance = _request_and_instance(old, "windows")
    made = old.get_model("requests_app", "Grant").objects.create(
        request=request, instance=instance, username="rs-abcdefgh", platform="windows"
    )
    assert Grant.objects.get(pk=made.pk).account_sid is None


def test_old_code_makes_a_grant_with_no_host_write_counted(committed: None) -> None:
    """Before requests_app 0027 a grant did not count the scripts that recorded its host's expiries:
    it starts at none, and its first script's record is kept."""
    from requests_app.models import Grant

    old = state_apps([("requests_app", "0026_os_username"), ACCOUNTS_LATEST])
    request, instance = _request_and_instance(old)
    made = old.get_model("requests_app", "Grant").objects.create(
        request=request, instance=instance, username="rs-abcdefgh", platform="linux"
    )
    assert Grant.objects.get(pk=made.pk).host_writes == 0
