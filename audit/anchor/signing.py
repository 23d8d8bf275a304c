"""The checkpoint's signed form and the Ed25519 keys that sign and verify it.

A checkpoint is a JSON object; its signature covers the canonical JSON (sorted keys, no
spaces) of every field but ``signature``, which is base64. The key signing now is
``PASSPORT_LOGBOOK_SIGNING_KEY`` (PEM); earlier keys' public halves stay trusted through
``PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS``. A key is named by its fingerprint, the first
16 hex digits of the SHA-256 of its 32 raw public bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from functools import cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

FORMAT = "passport-logbook-checkpoint/v1"
# The record of a checkpoint the task refused to write (``audit.anchor.refusals``), signed the same way.
REFUSAL_FORMAT = "passport-logbook-refusal/v1"


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


@cache
def _signing_key(pem: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise ImproperlyConfigured(
            f"PASSPORT_LOGBOOK_SIGNING_KEY is not an unencrypted PEM private key: {error}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured("PASSPORT_LOGBOOK_SIGNING_KEY must be an Ed25519 key.")
    return key


def signing_key() -> Ed25519PrivateKey:
    return _signing_key(settings.PASSPORT_LOGBOOK_SIGNING_KEY)


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """The form PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS takes: base64 of the raw 32 bytes."""
    return base64.b64encode(_raw(public_key)).decode()


def trusted_public_keys() -> dict[str, Ed25519PublicKey]:
    """Every key whose checkpoints are believed, by fingerprint: the current one and the old ones."""
    keys = [signing_key().public_key()]
    for text in settings.PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS:
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True)))
        except (ValueError, binascii.Error) as error:
            raise ImproperlyConfigured(
                f"PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS: {text!r} is not a key: {error}"
            ) from None
    return {fingerprint(key): key for key in keys}


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def checkpoint_sign(fields: dict[str, Any], *, form: str = FORMAT) -> bytes:
    """The object to store: ``fields`` with the format, the signer's fingerprint and the signature."""
    key = signing_key()
    signed = {**fields, "format": form, "signing_key": fingerprint(key.public_key())}
    signature = base64.b64encode(key.sign(_canonical(signed))).decode()
    return json.dumps({**signed, "signature": signature}, sort_keys=True).encode()


_CHECKPOINT_FIELDS = (("entry_id", int), ("hash", str), ("key_id", str), ("written_at", str))
_REFUSAL_FIELDS = (("head_entry_id", int), ("head_hash", str), ("tip_id", int), ("tip_hash", str), ("written_at", str))


class BadCheckpoint(ValueError):
    """The object is not a checkpoint that a trusted key signed."""


def checkpoint_open(body: bytes, trusted: dict[str, Ed25519PublicKey]) -> dict[str, Any]:
    """The checkpoint's (or a refusal's: its ``format`` says which) fields, once its signature is
    checked; BadCheckpoint otherwise."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadCheckpoint(f"not JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") not in (FORMAT, REFUSAL_FORMAT):
        raise BadCheckpoint(f"not a {FORMAT} object")
    signature_text = document.pop("signature", None)
    public_key = trusted.get(str(document.get("signing_key")))
    if public_key is None:
        raise BadCheckpoint(f"signed by an unknown key {document.get('signing_key')!r}")
    try:
        signature = base64.b64decode(str(signature_text), validate=True)
        public_key.verify(signature, _canonical(document))
    except (InvalidSignature, ValueError, binascii.Error):
        raise BadCheckpoint("its signature does not verify") from None
    names = _REFUSAL_FIELDS if document["format"] == REFUSAL_FORMAT else _CHECKPOINT_FIELDS
    for name, kind in names:
        if not isinstance(document.get(name), kind):
            raise BadCheckpoint(f"its field {name!r} is missing or malformed")
    return document
