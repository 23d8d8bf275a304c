"""Parameter Store as AWS keeps it, where moto is more lenient: a Standard-tier value's size, and
the KMS key a SecureString names."""

from __future__ import annotations

from collections.abc import Callable

from moto.core.responses import ActionResult, BaseResponse
from moto.kms.models import kms_backends
from moto.ssm.responses import SimpleSystemManagerResponse

from devcloud import errors
from devcloud.extensions.common import json_body

Response = SimpleSystemManagerResponse

# What a parameter's value may hold by tier (Intelligent-Tiering moves a larger one to Advanced).
_STANDARD_VALUE_LIMIT = 4096
_moto_put_parameter = SimpleSystemManagerResponse.put_parameter


def put_parameter(self: Response) -> ActionResult:
    """moto's PutParameter, refusing a Standard-tier value over 4 KB, and a SecureString whose ``KeyId``
    names no KMS key of the account and region (``InvalidKeyId``), as AWS does; moto takes any."""
    body = json_body(self)
    key_id = body.get("KeyId")
    if key_id and body.get("Type") == "SecureString" and not _kms_key_exists(self, key_id):
        raise errors.InvalidKeyId(f"Invalid KeyId: {key_id} is not a KMS key of this account and region.")
    value, tier = body.get("Value") or "", body.get("Tier")
    if tier is None:
        existing = self.ssm_backend.get_parameter(body.get("Name", "")) if body.get("Overwrite") else None
        tier = existing.tier if existing is not None else "Standard"
    if tier == "Standard" and len(value) > _STANDARD_VALUE_LIMIT:
        raise errors.SsmValidation(
            f"Standard tier parameters support a maximum parameter value of {_STANDARD_VALUE_LIMIT} characters. "
            "To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier."
        )
    return _moto_put_parameter(self)


def _kms_key_exists(self: Response, key_id: str) -> bool:
    """A key id, key ARN, alias name or alias ARN that names a key here (``aws/ssm`` always does)."""
    account, region = self.current_account, self.region
    if key_id.startswith("arn:"):
        parts = key_id.split(":", 5)
        if len(parts) != 6 or parts[2] != "kms" or parts[3] != region:
            return False
        account = parts[4]
    backend = kms_backends[account][region]
    try:
        resolved = backend.any_id_to_key_id(key_id)
    except (KeyError, TypeError, AttributeError):
        return False
    return resolved in backend.keys


def parameter_arn(self: BaseResponse, name: str) -> str:
    """A parameter's ARN: ``/a/b`` and ``a/b`` are both ``parameter/a/b``; an ARN is taken as it is."""
    if name.startswith("arn:"):
        return name
    return f"arn:{self.partition}:ssm:{self.region}:{self.current_account}:parameter/{name.lstrip('/')}"


HANDLERS: dict[str, Callable[[Response], ActionResult]] = {"put_parameter": put_parameter}
