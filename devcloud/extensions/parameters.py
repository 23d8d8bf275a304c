"""Parameter Store as AWS keeps it, where moto is more lenient: a Standard-tier value's size, and
the KMS key of a SecureString.

Parameter Store encrypts and decrypts a SecureString by calling KMS for its caller. Under the
account's ``aws/ssm`` key, whose key policy lets every principal of the account use it through
Parameter Store, that takes nothing more. Under a customer managed key the caller's policies must
allow ``kms:Encrypt`` (PutParameter; an Advanced-tier value, envelope-encrypted under a data key,
also ``kms:GenerateDataKey``) or ``kms:Decrypt`` (GetParameter, GetParameters,
GetParametersByPath, GetParameterHistory WithDecryption) on the key's ARN, with the
``kms:ViaService`` and ``kms:EncryptionContext:PARAMETER_ARN`` KMS sees ("Restricting decryption of
SecureString parameter values", Systems Manager User Guide); devcloud asks an assumed role's
policies (``sessionpolicy.denial``), as it does for the ``ssm:`` action itself. A key's own policy
is not evaluated (moto's default one leaves it to IAM). A key that is disabled or pending deletion
refuses both, as AWS answers: ``InvalidKeyId``, with KMS's error in the message (``kmskeys``, which
a Windows script's read of its hand-off on an instance shares).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from moto.core.responses import ActionResult, BaseResponse
from moto.kms.models import Key
from moto.ssm.models import Parameter
from moto.ssm.responses import SimpleSystemManagerResponse

from devcloud import errors, kmskeys, sessionpolicy
from devcloud.extensions.common import json_body

Response = SimpleSystemManagerResponse

# What a parameter's value may hold by tier (Intelligent-Tiering moves a larger one to Advanced).
_STANDARD_VALUE_LIMIT = 4096
_moto_put_parameter = SimpleSystemManagerResponse.put_parameter
_moto_get_parameter = SimpleSystemManagerResponse.get_parameter
_moto_get_parameters = SimpleSystemManagerResponse.get_parameters
_moto_get_parameters_by_path = SimpleSystemManagerResponse.get_parameters_by_path
_moto_get_parameter_history = SimpleSystemManagerResponse.get_parameter_history

# The account's AWS managed key for Parameter Store: its key policy allows every principal of the account.
_AWS_MANAGED_ALIAS = "alias/aws/ssm"


def put_parameter(self: Response) -> ActionResult:
    """moto's PutParameter, refusing a Standard-tier value over 4 KB, and a SecureString under a KMS
    key that is not one of the account and region (``InvalidKeyId``), that the caller may not
    encrypt with (``AccessDeniedException``) or that is not enabled, as AWS does; moto takes any.

    An overwrite may leave out Type and KeyId: moto then keeps the parameter's type and key (as AWS
    does), so the checks go by those. An Advanced-tier SecureString is envelope-encrypted under a
    data key from KMS, which takes ``kms:GenerateDataKey`` on the key besides ``kms:Encrypt``."""
    body = json_body(self)
    name = str(body.get("Name") or "")
    existing = self.ssm_backend.get_parameter(name) if body.get("Overwrite") else None
    value, tier = str(body.get("Value") or ""), body.get("Tier")
    if tier is None:
        tier = (existing.tier if existing is not None else None) or "Standard"
    parameter_type = body.get("Type") or (existing.parameter_type if existing is not None else None)
    if parameter_type == "SecureString":
        actions = ("kms:GenerateDataKey", "kms:Encrypt") if _advanced(body, tier, value) else ("kms:Encrypt",)
        _encryption_key_usable(self, body.get("KeyId"), existing, actions, name)
    if tier == "Standard" and len(value) > _STANDARD_VALUE_LIMIT:
        raise errors.SsmValidation(
            f"Standard tier parameters support a maximum parameter value of {_STANDARD_VALUE_LIMIT} characters. "
            "To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier."
        )
    return _moto_put_parameter(self)


def _advanced(body: dict[str, Any], tier: object, value: str) -> bool:
    """Whether the value is stored in the Advanced tier: asked for, or chosen by Intelligent-Tiering
    for a value over the Standard limit or one with parameter policies (only Advanced has them)."""
    if tier == "Intelligent-Tiering":
        return len(value) > _STANDARD_VALUE_LIMIT or bool(body.get("Policies"))
    return tier == "Advanced"


def _encryption_key_usable(
    self: Response, key_id: object, existing: Parameter | None, actions: tuple[str, ...], name: str
) -> None:
    """Refuse as AWS does when the key a SecureString is about to be encrypted under does not serve
    the caller for ``actions``: the call's KeyId, or else the one moto keeps from the parameter
    being overwritten (none at all: the account's ``aws/ssm`` key, which takes no permission)."""
    if key_id is not None:
        key = _kms_key(self, str(key_id))
        if key is None:
            raise errors.InvalidKeyId(f"Invalid KeyId: {key_id} is not a KMS key of this account and region.")
    elif existing is not None and existing.keyid:
        key = _kms_key(self, existing.keyid)
        if key is None:  # a key gone since: devcloud cannot tell which it was, as in ``_keys_usable``
            return
    else:
        return
    for action in actions:
        _key_usable(self, key, action, name)


def get_parameter(self: Response) -> ActionResult:
    body = json_body(self)
    if body.get("WithDecryption"):
        _keys_usable(self, [self.ssm_backend.get_parameter(str(body.get("Name") or ""))], "kms:Decrypt")
    return _moto_get_parameter(self)


def get_parameters(self: Response) -> ActionResult:
    body = json_body(self)
    names = body.get("Names")
    if body.get("WithDecryption") and isinstance(names, list):
        _keys_usable(self, self.ssm_backend.get_parameters([str(name) for name in names]).values(), "kms:Decrypt")
    return _moto_get_parameters(self)


def get_parameters_by_path(self: Response) -> ActionResult:
    body = json_body(self)
    if body.get("WithDecryption"):
        # The page moto is about to answer with, found as its handler finds it.
        page, _ = self.ssm_backend.get_parameters_by_path(
            str(body.get("Path") or ""),
            bool(body.get("Recursive", False)),
            body.get("ParameterFilters"),
            next_token=body.get("NextToken"),
            max_results=body.get("MaxResults", 10),
        )
        _keys_usable(self, page, "kms:Decrypt")
    return _moto_get_parameters_by_path(self)


def get_parameter_history(self: Response) -> ActionResult:
    body = json_body(self)
    if body.get("WithDecryption"):
        versions, _ = self.ssm_backend.get_parameter_history(
            str(body.get("Name") or ""), body.get("NextToken"), body.get("MaxResults", 50)
        )
        _keys_usable(self, versions or [], "kms:Decrypt")
    return _moto_get_parameter_history(self)


def _keys_usable(self: Response, parameters: Iterable[Parameter | None], action: str) -> None:
    """``_key_usable`` for the key of each SecureString among ``parameters`` (None: not found, moto says so)."""
    for parameter in parameters:
        if parameter is None or parameter.parameter_type != "SecureString" or not parameter.keyid:
            continue
        key = _kms_key(self, parameter.keyid)
        if key is not None:  # a key gone since: devcloud cannot tell which it was (AWS reads it from the ciphertext)
            _key_usable(self, key, action, parameter.name)


def _key_usable(self: Response, key: Key, action: str, name: str) -> None:
    """Refuse as AWS does when the caller's policies do not allow ``action`` (``kms:Encrypt``,
    ``kms:GenerateDataKey`` or ``kms:Decrypt``) on ``key`` for parameter ``name``, or when the key is not enabled."""
    if _AWS_MANAGED_ALIAS not in key.aliases:
        role = sessionpolicy.assumed_role(self.current_account, self.partition, self.get_access_key())
        if role is not None:
            context = {
                "kms:ViaService": [f"ssm.{self.region}.amazonaws.com"],
                "kms:CallerAccount": [self.current_account],
                "kms:EncryptionContext:PARAMETER_ARN": [parameter_arn(self, name)],
            }
            refusal = sessionpolicy.denial(role, self.partition, action, [key.arn], service="kms", context=context)
            if refusal is not None:
                raise refusal
    state = kmskeys.state_refusal(key)
    if state:
        raise errors.InvalidKeyId(state)


def _kms_key(self: Response, key_id: str) -> Key | None:
    """The key a key id, key ARN, alias name or alias ARN names for this call's account and region."""
    return kmskeys.find(self.current_account, self.region, key_id)


def parameter_arn(self: BaseResponse, name: str) -> str:
    """A parameter's ARN: ``/a/b`` and ``a/b`` are both ``parameter/a/b``; an ARN is taken as it is."""
    if name.startswith("arn:"):
        return name
    return f"arn:{self.partition}:ssm:{self.region}:{self.current_account}:parameter/{name.lstrip('/')}"


HANDLERS: dict[str, Callable[[Response], ActionResult]] = {
    "put_parameter": put_parameter,
    "get_parameter": get_parameter,
    "get_parameters": get_parameters,
    "get_parameters_by_path": get_parameters_by_path,
    "get_parameter_history": get_parameter_history,
}
