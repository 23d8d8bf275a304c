"""The host CA: certificates for the portal's own host keys, which the CLI pins.

The portal's SSH proxy answers for an instance: it shows the CLI's ssh a host certificate
whose principals name the instance, signed by the host CA. The CLI writes
``@cert-authority <pattern> <host CA line>`` into its own known_hosts and asks ssh for
``StrictHostKeyChecking=yes``, so there is no trust on first use. The host CA is a
separate set of keys (``CaKey.purpose == "host"``): it never signs a person's certificate,
and the user CA never signs a host's.
"""

from __future__ import annotations

import re
from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from django.db import transaction
from django.utils import timezone

from audit.services import logbook_append
from sshca.crypto import sha256_fingerprint
from sshca.errors import CaKeyStateError, CertificateRequestError
from sshca.models import CaKey, IssuedCertificate
from sshca.services.certificates import _KEY_ID_RE, CLOCK_SKEW, KEY_ID_MAX_LENGTH, MAX_VALIDITY, _parse_user_public_key
from sshca.services.keys import _ca_private_key, ca_key_ensure, trusted_public_key_lines

HOST_SIGNATURE_ALGORITHM = "ssh-ed25519"
# EC2 instance ids: i- and 8 or 17 hex digits.
_INSTANCE_ID_RE = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
# A plain DNS host name (RFC 1123 labels): no wildcards, commas, spaces or ports.
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME_RE = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
MAX_HOST_PRINCIPALS = 32
_PRINCIPALS_MAX_CHARS = 400  # IssuedCertificate.principal holds them joined by commas


def host_ca_public_keys() -> list[str]:
    """OpenSSH public key lines of the trusted host CA keys, Ed25519 first, active before trusted.

    Creates the active Ed25519 host CA key on first use, so there is always one to pin.
    """
    ca_key_ensure(key_type="ed25519", purpose="host")
    return trusted_public_key_lines(purpose="host")


def _validate_principals(principals: list[str]) -> list[str]:
    if not isinstance(principals, list | tuple) or not principals:
        # An empty principal list would make the certificate valid for any host.
        raise CertificateRequestError("A host certificate needs at least one principal.")
    if len(principals) > MAX_HOST_PRINCIPALS:
        raise CertificateRequestError(f"A host certificate may name at most {MAX_HOST_PRINCIPALS} principals.")
    checked: list[str] = []
    for principal in principals:
        if not isinstance(principal, str) or not (
            _INSTANCE_ID_RE.fullmatch(principal) or (len(principal) <= 253 and _HOST_NAME_RE.fullmatch(principal))
        ):
            raise CertificateRequestError(
                f"Bad host principal {principal!r}: use an instance id (i-...) or a plain host name."
            )
        if principal not in checked:
            checked.append(principal)
    if len(",".join(checked)) > _PRINCIPALS_MAX_CHARS:
        raise CertificateRequestError(f"The principals may be at most {_PRINCIPALS_MAX_CHARS} characters together.")
    return checked


def host_certificate_issue(*, public_key: str, principals: list[str], valid_seconds: int, key_id: str) -> str:
    """Sign a HOST certificate for ``public_key`` with the active Ed25519 host CA key.

    Returns the OpenSSH certificate line. ``principals`` are instance ids or plain host
    names (the names ssh is told to connect to); the certificate is valid from a minute
    ago (clock skew) for ``valid_seconds`` (at most 13 hours). Recorded like user
    certificates: an ``IssuedCertificate`` (with no request) and a Logbook entry
    ``host_certificate.issued`` without any key material.
    """
    checked = _validate_principals(principals)
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id) or len(key_id) > KEY_ID_MAX_LENGTH:
        raise CertificateRequestError(
            f"The key id must be 1-{KEY_ID_MAX_LENGTH} printable ASCII characters (no control characters)."
        )
    if isinstance(valid_seconds, bool) or not isinstance(valid_seconds, int) or valid_seconds <= 0:
        raise CertificateRequestError("valid_seconds must be a positive number of seconds.")
    if timedelta(seconds=valid_seconds) > MAX_VALIDITY:
        raise CertificateRequestError(f"A certificate may be valid for at most {MAX_VALIDITY} from now.")
    host_key = _parse_user_public_key(public_key)
    host_key_fingerprint = sha256_fingerprint(host_key)
    now = timezone.now().replace(microsecond=0)
    valid_after, valid_before = now - CLOCK_SKEW, now + timedelta(seconds=valid_seconds)

    ca_key_ensure(key_type="ed25519", purpose="host")
    with transaction.atomic():
        ca_key = (
            CaKey.objects.select_for_update()
            .filter(purpose=CaKey.Purpose.HOST, key_type=CaKey.KeyType.ED25519, state=CaKey.State.ACTIVE)
            .first()
        )
        if ca_key is None:
            raise CaKeyStateError("There is no active Ed25519 host CA key.")
        record = IssuedCertificate.objects.create(
            ca_key=ca_key,
            signature_algorithm=HOST_SIGNATURE_ALGORITHM,
            principal=",".join(checked),
            key_id=key_id,
            public_key_fingerprint=host_key_fingerprint,
            valid_after=valid_after,
            valid_before=valid_before,
        )
        builder = (
            serialization.SSHCertificateBuilder()
            .public_key(host_key)
            .serial(record.serial)
            .type(serialization.SSHCertificateType.HOST)
            .key_id(key_id.encode())
            .valid_principals([principal.encode() for principal in checked])
            .valid_after(int(valid_after.timestamp()))
            .valid_before(int(valid_before.timestamp()))
        )
        line = builder.sign(_ca_private_key(ca_key)).public_bytes().decode()
        logbook_append(
            action="host_certificate.issued",
            actor=None,
            instance_ids=[principal for principal in checked if _INSTANCE_ID_RE.fullmatch(principal)],
            detail={
                "serial": record.serial,
                "key_id": key_id,
                "principals": checked,
                "valid_after": valid_after.isoformat(),
                "valid_before": valid_before.isoformat(),
                "ca_fingerprint": ca_key.fingerprint,
                "public_key_fingerprint": host_key_fingerprint,
            },
        )
    return line
