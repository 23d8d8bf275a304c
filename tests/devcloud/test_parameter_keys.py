"""A SecureString under a customer managed KMS key, as AWS keeps it: the caller needs ``kms:Encrypt``
on the key to store one and ``kms:Decrypt`` to read it back decrypted, by whichever call; under the
account's ``aws/ssm`` key neither (its key policy allows every principal of the account); a key that
is disabled or pending deletion refuses both with ``InvalidKeyId``. moto asks KMS nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.devcloud.helpers import REGION, Aws

ACCOUNT = "123456789012"
TRUST = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
PARAMETERS = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/keys-test/*"


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _role(aws: Aws, *statements: dict[str, Any]) -> Aws:
    """A session of a new role allowed the parameter actions under /keys-test/, and ``statements``."""
    iam, name = aws.client("iam"), f"keys-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_policy(TRUST))["Role"]["Arn"]
    parameters = {"Effect": "Allow", "Action": ["ssm:PutParameter", "ssm:GetParameter*"], "Resource": PARAMETERS}
    iam.put_role_policy(RoleName=name, PolicyName="access", PolicyDocument=_policy(parameters, *statements))
    return aws.assume(arn)


def _key(aws: Aws) -> str:
    return str(aws.client("kms").create_key(Description="keys-test")["KeyMetadata"]["Arn"])


def _kms(action: str, key_arn: str, **condition: dict[str, str]) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": action, "Resource": key_arn}
    if condition:
        statement["Condition"] = condition
    return statement


def _name() -> str:
    return f"/keys-test/{uuid.uuid4().hex[:8]}/password"


def _error(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def _reads(ssm: Any, name: str) -> dict[str, Callable[[], Any]]:
    """Every call that returns a parameter's value decrypted."""
    path = name.rsplit("/", 1)[0]
    return {
        "GetParameter": lambda: ssm.get_parameter(Name=name, WithDecryption=True),
        "GetParameters": lambda: ssm.get_parameters(Names=[name], WithDecryption=True),
        "GetParametersByPath": lambda: ssm.get_parameters_by_path(Path=path, WithDecryption=True),
        "GetParameterHistory": lambda: ssm.get_parameter_history(Name=name, WithDecryption=True),
    }


def test_storing_under_a_key_takes_kms_encrypt_on_it(aws: Aws) -> None:
    key = _key(aws)
    name = _name()
    without = _role(aws).client("ssm")
    code, message = _error(lambda: without.put_parameter(Name=name, Value="s3cret", Type="SecureString", KeyId=key))
    assert code == "AccessDeniedException"
    assert f"kms:Encrypt on resource: {key}" in message and "s3cret" not in message
    assert _error(lambda: aws.client("ssm").get_parameter(Name=name))[0] == "ParameterNotFound"
    # Allowed as the portal's role is: through Parameter Store, for these parameters only.
    through_ssm = {
        "StringLike": {"kms:ViaService": "ssm.*.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": PARAMETERS}
    }
    allowed = _role(aws, _kms("kms:Encrypt", key, **through_ssm)).client("ssm")
    allowed.put_parameter(Name=name, Value="s3cret", Type="SecureString", KeyId=key)
    assert aws.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == "s3cret"
    # An overwrite naming no key keeps the parameter's: encrypted under it again.
    code, _ = _error(lambda: without.put_parameter(Name=name, Value="other", Type="SecureString", Overwrite=True))
    assert code == "AccessDeniedException"


def test_the_accounts_aws_ssm_key_takes_no_kms_permission(aws: Aws) -> None:
    ssm = _role(aws).client("ssm")
    for name, key in ((_name(), {}), (_name(), {"KeyId": "alias/aws/ssm"})):
        ssm.put_parameter(Name=name, Value="s3cret", Type="SecureString", **key)
        for read in _reads(ssm, name).values():
            assert "s3cret" in json.dumps(read(), default=str)


def test_reading_decrypted_takes_kms_decrypt_on_the_key_by_every_call(aws: Aws) -> None:
    key = _key(aws)
    name = _name()
    aws.client("ssm").put_parameter(Name=name, Value="s3cret", Type="SecureString", KeyId=key)
    without = _role(aws, _kms("kms:Encrypt", key)).client("ssm")
    for call, read in _reads(without, name).items():
        code, message = _error(read)
        assert (code, f"kms:Decrypt on resource: {key}" in message) == ("AccessDeniedException", True), call
    # Not decrypted: the ciphertext, with no KMS call.
    assert without.get_parameter(Name=name)["Parameter"]["Value"] != "s3cret"
    allowed = _role(aws, _kms("kms:Decrypt", key, StringEquals={"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}))
    for read in _reads(allowed.client("ssm"), name).values():
        assert "s3cret" in json.dumps(read(), default=str)


def test_a_key_that_is_not_enabled_neither_stores_nor_decrypts(aws: Aws) -> None:
    kms = aws.client("kms")
    disabled, pending = _key(aws), _key(aws)
    stored = {disabled: _name(), pending: _name()}
    for key, name in stored.items():
        aws.client("ssm").put_parameter(Name=name, Value="s3cret", Type="SecureString", KeyId=key)
    kms.disable_key(KeyId=disabled.rsplit("/", 1)[1])  # moto's takes the id only
    kms.schedule_key_deletion(KeyId=pending.rsplit("/", 1)[1], PendingWindowInDays=7)
    ssm = _role(aws, _kms("kms:*", disabled), _kms("kms:*", pending)).client("ssm")
    for key, state, code in (
        (disabled, "is disabled", "DisabledException"),
        (pending, "is pending deletion", "KMSInvalidStateException"),
    ):
        refused = _error(partial(ssm.put_parameter, Name=_name(), Value="s3cret", Type="SecureString", KeyId=key))
        assert refused[0] == "InvalidKeyId" and f"{key} {state}" in refused[1] and code in refused[1]
        for call, read in _reads(ssm, stored[key]).items():
            assert _error(read)[0] == "InvalidKeyId", call
    kms.enable_key(KeyId=disabled.rsplit("/", 1)[1])
    assert ssm.get_parameter(Name=stored[disabled], WithDecryption=True)["Parameter"]["Value"] == "s3cret"


def test_an_overwrite_leaving_out_type_and_key_is_checked_under_the_key_it_keeps(aws: Aws) -> None:
    kms, key, name = aws.client("kms"), _key(aws), _name()
    admin = aws.client("ssm")
    admin.put_parameter(Name=name, Value="s3cret", Type="SecureString", KeyId=key)
    # Type may be left out on an update: the parameter stays a SecureString under its key.
    decrypt_only = _role(aws, _kms("kms:Decrypt", key)).client("ssm")
    code, message = _error(lambda: decrypt_only.put_parameter(Name=name, Value="other", Overwrite=True))
    assert (code, f"kms:Encrypt on resource: {key}" in message) == ("AccessDeniedException", True)
    allowed = _role(aws, _kms("kms:Encrypt", key)).client("ssm")
    allowed.put_parameter(Name=name, Value="other", Overwrite=True)
    stored = admin.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert (stored["Type"], stored["Value"]) == ("SecureString", "other")
    # A key named on such an update must be one of the account, and the kept one must be enabled.
    code, _ = _error(lambda: admin.put_parameter(Name=name, Value="x", Overwrite=True, KeyId="alias/no-such-key"))
    assert code == "InvalidKeyId"
    kms.disable_key(KeyId=key.rsplit("/", 1)[1])
    code, message = _error(lambda: allowed.put_parameter(Name=name, Value="x", Overwrite=True))
    assert code == "InvalidKeyId" and f"{key} is disabled" in message
    # A plain String overwritten without Type stays one: no key involved.
    plain = f"{name}-plain"
    admin.put_parameter(Name=plain, Value="a", Type="String")
    decrypt_only.put_parameter(Name=plain, Value="b", Overwrite=True)
    assert admin.get_parameter(Name=plain)["Parameter"]["Type"] == "String"


def test_an_advanced_securestring_also_takes_kms_generate_data_key(aws: Aws) -> None:
    key = _key(aws)
    encrypt_only = _role(aws, _kms("kms:Encrypt", key)).client("ssm")
    large = "x" * 5_000
    advanced = {
        "Tier=Advanced": partial(encrypt_only.put_parameter, Value="s3cret", Tier="Advanced"),
        "Intelligent-Tiering, over 4 KB": partial(encrypt_only.put_parameter, Value=large, Tier="Intelligent-Tiering"),
    }
    for case, put in advanced.items():
        code, message = _error(partial(put, Name=_name(), Type="SecureString", KeyId=key))
        assert (code, f"kms:GenerateDataKey on resource: {key}" in message) == ("AccessDeniedException", True), case
    # Intelligent-Tiering keeps a small value Standard: kms:Encrypt is enough.
    encrypt_only.put_parameter(Name=_name(), Value="s3cret", Type="SecureString", KeyId=key, Tier="Intelligent-Tiering")
    through_ssm = {
        "StringLike": {"kms:ViaService": "ssm.*.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": PARAMETERS}
    }
    both = _role(aws, _kms("kms:Encrypt", key, **through_ssm), _kms("kms:GenerateDataKey", key, **through_ssm))
    name = _name()
    both.client("ssm").put_parameter(Name=name, Value="s3cret", Type="SecureString", KeyId=key, Tier="Advanced")
    assert aws.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == "s3cret"
    # Overwriting it with neither Type nor Tier keeps it an Advanced SecureString under the key.
    code, message = _error(lambda: encrypt_only.put_parameter(Name=name, Value="other", Overwrite=True))
    assert (code, "kms:GenerateDataKey" in message) == ("AccessDeniedException", True)
    # GenerateDataKey alone is not enough either (AWS's Systems Manager guide: both, for Advanced).
    generate_only = _role(aws, _kms("kms:GenerateDataKey", key)).client("ssm")
    code, message = _error(lambda: generate_only.put_parameter(Name=name, Value="other", Overwrite=True))
    assert (code, "kms:Encrypt on resource" in message) == ("AccessDeniedException", True)
