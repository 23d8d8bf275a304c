"""The KMS key a Windows password waits under in Parameter Store (``PASSPORT_HANDOFF_KMS_KEY``).

AWS's ``aws/ssm`` key lets every principal of the account decrypt through Parameter Store, so a
person with ReadOnlyAccess could read a password while its script runs; a key of the operator's
own keeps it to the instances' roles. Through the portal's own gateway to devcloud, which refuses a
``KeyId`` that names no key of the account and region, a key the portal's role may not encrypt with,
and a key that is not enabled, as AWS does (moto takes any).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from accounts.models import AwsAccount
from fleet import FleetError, fleet_for
from fleet.scripts import HANDOFF_PREFIX
from tests.stack import Cloud, account_admin_client, portal_role_denied

pytestmark = pytest.mark.usefixtures("live_db")


def _alias(aws: Cloud, prod: AwsAccount) -> str:
    """A key of the account's own, under a fresh alias."""
    kms = account_admin_client(aws, prod.account_id, "kms")
    key_id = kms.create_key(Description="Passport hand-off")["KeyMetadata"]["KeyId"]
    alias = f"alias/passport-handoff-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return alias


def _absent(aws: Cloud, prod: AwsAccount, name: str) -> None:
    ssm = account_admin_client(aws, prod.account_id, "ssm")
    with pytest.raises(ClientError) as missing:
        ssm.get_parameter(Name=name)
    assert missing.value.response["Error"]["Code"] == "ParameterNotFound"


def _stored(aws: Cloud, prod: AwsAccount, name: str) -> dict[str, Any]:
    ssm = account_admin_client(aws, prod.account_id, "ssm")
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"]
    return described[0]


def test_a_password_waits_under_the_key_the_setting_names(aws: Cloud, prod: AwsAccount, settings: Any) -> None:
    settings.PASSPORT_HANDOFF_KMS_KEY = _alias(aws, prod)
    name = f"{HANDOFF_PREFIX}{uuid.uuid4()}"
    fleet_for(prod).put_handoff(name, "pa$$'\"`;word", settings.AWS_REGION)
    try:
        assert _stored(aws, prod, name)["KeyId"] == settings.PASSPORT_HANDOFF_KMS_KEY
        ssm = account_admin_client(aws, prod.account_id, "ssm")
        assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == "pa$$'\"`;word"
    finally:
        fleet_for(prod).delete_handoff(name, settings.AWS_REGION)


def test_without_the_setting_it_is_the_accounts_aws_ssm_key(aws: Cloud, prod: AwsAccount, settings: Any) -> None:
    settings.PASSPORT_HANDOFF_KMS_KEY = ""
    name = f"{HANDOFF_PREFIX}{uuid.uuid4()}"
    fleet_for(prod).put_handoff(name, "secret", settings.AWS_REGION)
    try:
        assert _stored(aws, prod, name)["KeyId"] == "alias/aws/ssm"
    finally:
        fleet_for(prod).delete_handoff(name, settings.AWS_REGION)


@pytest.mark.parametrize(
    "key", ["alias/passport-handoff-missing", "arn:aws:kms:eu-west-3:111111111111:alias/passport-handoff"]
)
def test_a_key_the_account_does_not_have_stores_nothing_and_says_why(
    aws: Cloud, prod: AwsAccount, settings: Any, key: str
) -> None:
    settings.PASSPORT_HANDOFF_KMS_KEY = key
    name = f"{HANDOFF_PREFIX}{uuid.uuid4()}"
    with pytest.raises(FleetError) as refused:
        fleet_for(prod).put_handoff(name, "secret", settings.AWS_REGION)
    assert "InvalidKeyId" in str(refused.value) and "secret" not in str(refused.value)
    _absent(aws, prod, name)


def test_a_portal_role_denied_kms_encrypt_on_the_key_stores_nothing(
    aws: Cloud, prod: AwsAccount, settings: Any
) -> None:
    """Parameter Store encrypts with the caller's own permission: the portal role's
    WindowsPasswordHandOffKey statement allows it (the first test), an explicit Deny refuses it."""
    settings.PASSPORT_HANDOFF_KMS_KEY = _alias(aws, prod)
    name = f"{HANDOFF_PREFIX}{uuid.uuid4()}"
    with portal_role_denied(aws, prod.account_id, "kms:Encrypt"), pytest.raises(FleetError) as refused:
        fleet_for(prod).put_handoff(name, "secret", settings.AWS_REGION)
    assert "AccessDenied" in str(refused.value) and "kms:Encrypt" in str(refused.value)
    assert "secret" not in str(refused.value)
    _absent(aws, prod, name)


def test_a_disabled_key_stores_nothing_and_says_why(aws: Cloud, prod: AwsAccount, settings: Any) -> None:
    """KMS encrypts nothing with a disabled key; Parameter Store answers InvalidKeyId, KMS's reason in it."""
    alias = _alias(aws, prod)
    kms = account_admin_client(aws, prod.account_id, "kms")
    kms.disable_key(KeyId=kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"])
    settings.PASSPORT_HANDOFF_KMS_KEY = alias
    name = f"{HANDOFF_PREFIX}{uuid.uuid4()}"
    with pytest.raises(FleetError) as refused:
        fleet_for(prod).put_handoff(name, "secret", settings.AWS_REGION)
    assert "InvalidKeyId" in str(refused.value) and "is disabled" in str(refused.value)
    _absent(aws, prod, name)


def test_another_accounts_key_is_not_this_accounts(aws: Cloud, prod: AwsAccount, settings: Any) -> None:
    """An alias made in one account names nothing in another (each account makes its own)."""
    staging = next(item for item in aws.manifest["accounts"] if item["id"] != prod.account_id)
    kms = account_admin_client(aws, staging["id"], "kms")
    key_id = kms.create_key(Description="elsewhere")["KeyMetadata"]["KeyId"]
    alias = f"alias/elsewhere-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    settings.PASSPORT_HANDOFF_KMS_KEY = alias
    with pytest.raises(FleetError, match="InvalidKeyId"):
        fleet_for(prod).put_handoff(f"{HANDOFF_PREFIX}{uuid.uuid4()}", "secret", settings.AWS_REGION)


def test_each_demo_account_has_its_own_hand_off_key(aws: Cloud) -> None:
    """scripts/demo sets PASSPORT_HANDOFF_KMS_KEY=alias/passport-handoff: devcloud's seed makes it."""
    from devcloud.seed import HANDOFF_KEY_ALIAS

    keys = set()
    for account in aws.manifest["accounts"]:
        kms = account_admin_client(aws, account["id"], "kms")
        keys.add(kms.describe_key(KeyId=HANDOFF_KEY_ALIAS)["KeyMetadata"]["Arn"])
    assert len(keys) == len(aws.manifest["accounts"]) > 1
