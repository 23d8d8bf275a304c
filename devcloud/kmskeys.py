"""KMS keys as a service that encrypts through KMS sees them: which key an id, ARN or alias names,
and what KMS answers when that key is not enabled.

Parameter Store's calls (``extensions.parameters``) and a Windows script's read of its hand-off on
an instance (``runcommand.store``) both decrypt through KMS, and both are refused the same way by a
key that is disabled or pending deletion: ``InvalidKeyId``, with KMS's own error in the message.
"""

from __future__ import annotations

from moto.kms.models import Key, kms_backends

# What KMS answers for a key in each state it refuses to encrypt or decrypt with.
_STATE_REFUSALS = {
    "Disabled": ("is disabled", "DisabledException"),
    "PendingDeletion": ("is pending deletion", "KMSInvalidStateException"),
}


def find(account: str, region: str, key_id: str) -> Key | None:
    """The key a key id, key ARN, alias name or alias ARN names in ``account`` and ``region`` (an ARN
    names its own account; ``aws/ssm`` always names one); None if none."""
    if key_id.startswith("arn:"):
        parts = key_id.split(":", 5)
        if len(parts) != 6 or parts[2] != "kms" or parts[3] != region:
            return None
        account = parts[4]
    backend = kms_backends[account][region]
    try:
        resolved = backend.any_id_to_key_id(key_id)
    except (KeyError, TypeError, AttributeError):
        return None
    return backend.keys.get(resolved)


def state_refusal(key: Key) -> str:
    """KMS's refusal of ``key`` when it is not enabled, as Parameter Store passes it on; '' when enabled."""
    if key.key_state == "Enabled":
        return ""
    what, code = _STATE_REFUSALS.get(key.key_state, (f"is {key.key_state}", "KMSInvalidStateException"))
    return f"{key.arn} {what}. (Service: AWSKMS; Status Code: 400; Error Code: {code})"
