"""What an admin change shows in the Logbook: every field's value, except secrets, which are only named.

The one place that decides which fields are secret. A field is hidden when it is listed in
HIDDEN_FIELDS, when it holds bytes, or when its name looks like a secret (SECRET_NAME), unless
SHOWN_FIELDS lets it through. Hidden values never leave this module: a snapshot keeps only a
digest of them, so a change is still noticed, and the record says "(changed)". A certificate
(FINGERPRINTED_FIELDS) is public but long: it is recorded by its SHA-256 fingerprint, which is what
an auditor compares with the identity provider's metadata.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import hashlib
import json
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import models

# "app_label.model.field", lower case.
HIDDEN_FIELDS: frozenset[str] = frozenset(
    {
        # allauth's second factors: the TOTP secret and the recovery-code seed live in this JSON.
        "mfa.authenticator.data",
        # What every session's sign-in hash is also made of (accounts.session_stamps): its renewal
        # is shown as "(changed)", the value never.
        "accounts.user.security_stamp",
    }
)
# Names that look secret but hold public facts, shown so a reviewer can follow the change.
SHOWN_FIELDS: frozenset[str] = frozenset(
    {
        "sshca.cakey.public_key",
        "sshca.cakey.key_type",
        "sshca.issuedcertificate.key_id",
        "sshca.issuedcertificate.public_key_fingerprint",
    }
)
# Certificates, recorded by fingerprint (certificate_fingerprints), never as their text.
FINGERPRINTED_FIELDS: frozenset[str] = frozenset({"accounts.samlidentityprovider.x509cert"})
SECRET_NAME = re.compile(
    r"pass(w|phrase|code)|secret|key|token|seal|encrypt|cert|private|hash|otp|credential|salt", re.IGNORECASE
)

# Long values (a transcript, a pasted document) are cut in the record; the comparison uses all of it.
VALUE_CHARS = 500
MANY_ITEMS = 200

SET, EMPTY, CHANGED = "(set)", "(empty)", "(changed)"


@dataclass(frozen=True)
class Hidden:
    """A secret field's value as a snapshot keeps it: whether it is set, and a digest to compare."""

    digest: str
    empty: bool

    def shown(self) -> str:
        return EMPTY if self.empty else SET


def field_key(model: type[models.Model], name: str) -> str:
    return f"{model._meta.label_lower}.{name}"


def is_secret(model: type[models.Model], field: models.Field[Any, Any] | models.ForeignObjectRel) -> bool:
    key = field_key(model, field.name)
    if key in SHOWN_FIELDS:
        return False
    if key in HIDDEN_FIELDS or isinstance(field, models.BinaryField):
        return True
    return bool(SECRET_NAME.search(field.name))


_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)


def certificate_fingerprints(text: str) -> str:
    """``SHA256:AB:CD:…`` of each certificate in ``text`` (PEM blocks, or one base64 body without its
    PEM lines, as python3-saml takes it), as ``openssl x509 -fingerprint -sha256`` prints it; several
    are separated by ", ". Text that is no certificate is named by the SHA-256 of the text, so that
    a change of it is still seen. EMPTY for none."""
    if not text.strip():
        return EMPTY
    prints = []
    for body in _PEM_CERTIFICATE.findall(text) or [text]:
        try:
            der = base64.b64decode(re.sub(r"\s+", "", body), validate=True)
        except (binascii.Error, ValueError):
            der = b""
        if not der:
            return f"not a certificate, text SHA256:{hashlib.sha256(text.encode()).hexdigest()}"
        prints.append(f"SHA256:{_colon_hex(hashlib.sha256(der).digest())}")
    return ", ".join(prints)


def hidden(value: Any) -> Hidden:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    else:  # canonical JSON, so the same secret read twice compares equal whatever its key order
        raw = json.dumps(value, sort_keys=True, default=str).encode()
    return Hidden(digest=hashlib.sha256(raw).hexdigest(), empty=value in (None, "", b"", {}, []))


def _plain(value: Any) -> Any:
    """A JSON-safe form of a field's value (the full value: cutting happens when it is shown)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return str(value)


def _related(obj: models.Model, name: str) -> str:
    # Some references have no database constraint (the Logbook's actor): the row may be gone.
    try:
        return str(getattr(obj, name))
    except ObjectDoesNotExist:
        return "(missing)"


def snapshot(obj: models.Model, names: Collection[str] | None = None) -> dict[str, Any]:
    """Every concrete and many-to-many field of a saved row (or only those ``names``), secrets as digests."""
    model = type(obj)
    values: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        if field.primary_key or (names is not None and field.name not in names):
            continue
        value = field.value_from_object(obj)
        if field_key(model, field.name) in FINGERPRINTED_FIELDS:
            values[field.name] = certificate_fingerprints(str(value or ""))
        elif is_secret(model, field):
            values[field.name] = hidden(value)
        elif field.is_relation and value is not None:
            values[field.name] = f"{_related(obj, field.name)} (#{value})"
        else:
            values[field.name] = _plain(value)
    for m2m in model._meta.many_to_many:
        if obj.pk is None or (names is not None and m2m.name not in names):
            continue
        related_objects = sorted(f"{item} (#{item.pk})" for item in getattr(obj, m2m.name).all())
        values[m2m.name] = hidden(related_objects) if is_secret(model, m2m) else related_objects
    return values


def shown(value: Any) -> Any:
    """A snapshot value as the Logbook records it."""
    if isinstance(value, Hidden):
        return value.shown()
    if isinstance(value, str) and len(value) > VALUE_CHARS:
        return f"{value[:VALUE_CHARS]}… ({len(value)} characters)"
    if isinstance(value, list) and len(value) > MANY_ITEMS:
        return [*(shown(item) for item in value[:MANY_ITEMS]), f"… ({len(value)} in all)"]
    if isinstance(value, list):
        return [shown(item) for item in value]
    if isinstance(value, dict):
        return {key: shown(item) for key, item in value.items()}
    return value


def shown_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {name: shown(value) for name, value in values.items()}


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Field name -> {"before", "after"} for what differs; a secret is only named as changed."""
    changed: dict[str, Any] = {}
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if isinstance(old, Hidden) or isinstance(new, Hidden):
            changed[name] = CHANGED
        else:
            changed[name] = {"before": shown(old), "after": shown(new)}
    return changed
