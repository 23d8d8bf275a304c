"""Certificates: a person's public key checked, signed by a CA key its host trusts, and recorded.

Which key signs (``_signing_key``): for a grant, the newest still-trusted key among those its host's
lines were last written with (``Grant.key_ca_fingerprints``), so a rotation locks nobody out while
the refresh is on its way to the hosts; otherwise, and when none of those is trusted any more, the
active key. Never a retired key."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.db import transaction
from django.utils import timezone

from accounts.models import AwsAccount, User
from audit.services import logbook_append
from core.usernames import InvalidPrincipal, validate_certificate_principal
from sshca.certformat import UserCertificateFields, certificate_line, sign_user_certificate
from sshca.crypto import CaPrivateKey, sha256_fingerprint
from sshca.errors import CaKeyStateError, CertificateRequestError
from sshca.models import CaKey, IssuedCertificate
from sshca.services.keys import CaKeyType, _ca_private_key, ca_key_ensure

SignatureAlgorithm = Literal["ssh-ed25519", "rsa-sha2-512", "ssh-rsa"]

# Which CA key type makes each signature.
SIGNATURE_CA_KEY_TYPE: dict[str, CaKeyType] = {"ssh-ed25519": "ed25519", "rsa-sha2-512": "rsa", "ssh-rsa": "rsa"}
# Shell and tunnels (the CLI's port forwarding); no agent or X11 forwarding, no user rc.
CERTIFICATE_EXTENSIONS = ("permit-port-forwarding", "permit-pty")
# Clocks on customers' servers drift; a certificate valid only from "now" fails on a
# server a few seconds behind.
CLOCK_SKEW = timedelta(seconds=60)
# A request lasts at most 12 h in total; one hour of slack for the clock and the call.
MAX_VALIDITY = timedelta(hours=13)
# A caller may start a certificate where an earlier one for the same login starts (the portal's
# RSA fallback beside its Ed25519 certificate), but not more than this before the usual start.
MAX_BACKDATE = timedelta(minutes=5)
KEY_ID_MAX_LENGTH = 200
_KEY_ID_RE = re.compile(r"[\x20-\x7e]+")
MIN_RSA_USER_KEY_BITS = 2048

UserPublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def _parse_user_public_key(public_key: str) -> UserPublicKey:
    if not isinstance(public_key, str) or "\n" in public_key.strip() or not public_key.strip():
        raise CertificateRequestError("The public key must be one OpenSSH public key line.")
    try:
        parsed = serialization.load_ssh_public_identity(public_key.strip().encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise CertificateRequestError(f"The public key is not a usable OpenSSH public key: {error}") from None
    if isinstance(parsed, serialization.SSHCertificate):
        raise CertificateRequestError("Give the public key itself, not a certificate.")
    if not isinstance(parsed, ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CertificateRequestError(f"Keys of type {type(parsed).__name__} are not supported.")
    if isinstance(parsed, rsa.RSAPublicKey) and parsed.key_size < MIN_RSA_USER_KEY_BITS:
        raise CertificateRequestError(f"RSA keys must have at least {MIN_RSA_USER_KEY_BITS} bits.")
    return parsed


def _validate_request(
    *, principal: str, key_id: str, valid_before: datetime, now: datetime, valid_after: datetime | None = None
) -> tuple[datetime, datetime]:
    """Check what the caller asked for; returns (valid_after, valid_before) on whole seconds."""
    try:
        validate_certificate_principal(principal)
    except InvalidPrincipal as error:
        raise CertificateRequestError(f"Bad principal: {error}") from None
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id) or len(key_id) > KEY_ID_MAX_LENGTH:
        raise CertificateRequestError(
            f"The key id must be 1-{KEY_ID_MAX_LENGTH} printable ASCII characters (no control characters)."
        )
    if not isinstance(valid_before, datetime) or timezone.is_naive(valid_before):
        raise CertificateRequestError("valid_before must be a timezone-aware datetime.")
    if valid_before <= now:
        raise CertificateRequestError("valid_before is in the past.")
    if valid_before - now > MAX_VALIDITY:
        raise CertificateRequestError(f"A certificate may be valid for at most {MAX_VALIDITY} from now.")
    if valid_after is None:
        return (now - CLOCK_SKEW).replace(microsecond=0), valid_before.replace(microsecond=0)
    if not isinstance(valid_after, datetime) or timezone.is_naive(valid_after):
        raise CertificateRequestError("valid_after must be a timezone-aware datetime.")
    if not now - CLOCK_SKEW - MAX_BACKDATE <= valid_after <= now:
        raise CertificateRequestError(
            f"valid_after may be at most {CLOCK_SKEW + MAX_BACKDATE} before now, and not in the future."
        )
    return valid_after.replace(microsecond=0), valid_before.replace(microsecond=0)


def certificate_key_id(*, grant_uid: object, request_id: int, instance_id: str, person: User) -> str:
    """The key id of a grant's certificate: the grant, its request and instance, and the person.

    sshd logs the key id with every login, which is how a server's own logs point back to
    a Passport grant. Every part is reduced to printable ASCII; usernames may be Unicode, so
    they are escaped, never dropped.
    """

    def printable(text: str) -> str:
        text = text.encode("ascii", "backslashreplace").decode()
        return "".join(char if " " < char <= "~" else "?" for char in text)

    return (
        f"passport grant={printable(str(grant_uid))} request={int(request_id)} instance={printable(instance_id)} "
        f"person={person.pk} {printable(person.get_username())}"
    )[:KEY_ID_MAX_LENGTH]


def _sign(
    *,
    ca_private_key: CaPrivateKey,
    signature_algorithm: str,
    user_key: UserPublicKey,
    serial: int,
    key_id: str,
    principal: str,
    valid_after: int,
    valid_before: int,
) -> str:
    if signature_algorithm == "ssh-rsa":
        # cryptography's builder cannot make SHA-1 signatures: our own encoder does.
        fields = UserCertificateFields(
            public_key=user_key,
            serial=serial,
            key_id=key_id,
            principals=[principal],
            valid_after=valid_after,
            valid_before=valid_before,
            extensions=CERTIFICATE_EXTENSIONS,
        )
        blob = sign_user_certificate(fields, ca_private_key=ca_private_key, signature_algorithm=signature_algorithm)
        return certificate_line(blob)
    builder = (
        serialization.SSHCertificateBuilder()
        .public_key(user_key)
        .serial(serial)
        .type(serialization.SSHCertificateType.USER)
        .key_id(key_id.encode())
        .valid_principals([principal.encode()])
        .valid_after(valid_after)
        .valid_before(valid_before)
    )
    for extension in CERTIFICATE_EXTENSIONS:
        builder = builder.add_extension(extension.encode(), b"")
    return builder.sign(ca_private_key).public_bytes().decode()


def _signing_key(key_type: CaKeyType, host_ca_fingerprints: Sequence[str] | None) -> CaKey | None:
    """The user CA key of ``key_type`` to sign with, locked until the transaction ends: the newest
    active or trusted key among ``host_ca_fingerprints`` (what the host's lines trust), else the
    active one (none recorded, or none of them trusted any more). After a rotation the host trusts
    only the previous key until its refresh lands: that key, still trusted, signs for it till then,
    and a key retired meanwhile (a compromised one, forced) signs nothing."""
    keys = list(
        CaKey.objects.select_for_update()
        .filter(purpose=CaKey.Purpose.USER, key_type=key_type, state__in=[CaKey.State.ACTIVE, CaKey.State.TRUSTED])
        .order_by("-created_at", "-id")
    )
    written = set(host_ca_fingerprints or ())
    for key in keys:  # newest first
        if key.fingerprint in written:
            return key
    return next((key for key in keys if key.state == CaKey.State.ACTIVE), None)


def certificate_issue(
    *,
    public_key: str,
    principal: str,
    valid_before: datetime,
    key_id: str,
    signature_algorithm: SignatureAlgorithm = "ssh-ed25519",
    ca_key_type: CaKeyType | None = None,
    valid_after: datetime | None = None,
    actor: User | None = None,
    account: AwsAccount | str | None = None,
    request_id: int | None = None,
    instance_ids: list[str] | None = None,
    host_ca_fingerprints: Sequence[str] | None = None,
) -> str:
    """Sign a user certificate for exactly one principal; returns the OpenSSH certificate line.

    ``key_id`` should name the request and the person (``certificate_key_id`` makes one).

    ``ca_key_type`` defaults to the type that makes ``signature_algorithm`` (Ed25519 for
    ssh-ed25519, RSA for rsa-sha2-512 and ssh-rsa). The certificate is valid from a
    minute ago (clock skew), or from ``valid_after`` (at most MAX_BACKDATE before that, to match
    another certificate for the same login), until ``valid_before``, carries only permit-pty and
    permit-port-forwarding, and is recorded in the Logbook without any key material, naming the CA
    key that signed it.

    ``host_ca_fingerprints``: the CA keys the host's lines were last written with (a grant's
    ``key_ca_fingerprints``), so the certificate is signed by one the host trusts (``_signing_key``).
    """
    if signature_algorithm not in SIGNATURE_CA_KEY_TYPE:
        raise CertificateRequestError(
            f"Unknown signature algorithm {signature_algorithm!r}: use one of {', '.join(SIGNATURE_CA_KEY_TYPE)}."
        )
    required_ca = SIGNATURE_CA_KEY_TYPE[signature_algorithm]
    if ca_key_type is not None and ca_key_type != required_ca:
        raise CertificateRequestError(f"A {ca_key_type} CA cannot sign with {signature_algorithm}.")
    valid_after, valid_before = _validate_request(
        principal=principal, key_id=key_id, valid_before=valid_before, now=timezone.now(), valid_after=valid_after
    )
    user_key = _parse_user_public_key(public_key)
    user_key_fingerprint = sha256_fingerprint(user_key)

    # First use generates the key (a second for RSA): before the transaction, not inside it.
    ca_key_ensure(key_type=required_ca)
    with transaction.atomic():
        # Re-read under a lock: a rotation or retirement in between must not leave us
        # signing with a key that is retired.
        ca_key = _signing_key(required_ca, host_ca_fingerprints)
        if ca_key is None:
            raise CaKeyStateError(f"There is no active {required_ca} CA key.")
        record = IssuedCertificate.objects.create(
            ca_key=ca_key,
            signature_algorithm=signature_algorithm,
            principal=principal,
            key_id=key_id,
            public_key_fingerprint=user_key_fingerprint,
            valid_after=valid_after,
            valid_before=valid_before,
            actor=actor,
            request_id=request_id,
        )
        line = _sign(
            ca_private_key=_ca_private_key(ca_key),
            signature_algorithm=signature_algorithm,
            user_key=user_key,
            serial=record.serial,
            key_id=key_id,
            principal=principal,
            valid_after=int(valid_after.timestamp()),
            valid_before=int(valid_before.timestamp()),
        )
        logbook_append(
            action="certificate.issued",
            actor=actor,
            account=account,
            request_id=request_id,
            instance_ids=instance_ids or [],
            detail={
                "serial": record.serial,
                "key_id": key_id,
                "principal": principal,
                "valid_after": valid_after.isoformat(),
                "valid_before": valid_before.isoformat(),
                "ca_fingerprint": ca_key.fingerprint,
                "ca_key_type": ca_key.key_type,
                "signature_algorithm": signature_algorithm,
                "public_key_fingerprint": user_key_fingerprint,
            },
        )
    return line


def certificates_for_key(
    *,
    public_key: str,
    principal: str,
    valid_before: datetime,
    key_id: str,
    valid_after: datetime | None = None,
    actor: User | None = None,
    account: AwsAccount | str | None = None,
    request_id: int | None = None,
    instance_ids: list[str] | None = None,
    host_ca_fingerprints: Sequence[str] | None = None,
) -> list[str]:
    """The certificates a client should offer for ``public_key``, in the order to try them.

    An RSA key gets two, both from the RSA CA: rsa-sha2-512 first, then ssh-rsa (SHA-1)
    for servers older than OpenSSH 7.2, which know no other RSA signature. Any other
    key (Ed25519, ECDSA) gets one from the Ed25519 CA. All or none are issued, with one
    validity: from ``valid_after`` when given (see ``certificate_issue``), each signed by a key the
    host's lines trust (``host_ca_fingerprints``, see ``certificate_issue``).
    """
    user_key = _parse_user_public_key(public_key)
    algorithms: list[SignatureAlgorithm] = (
        ["rsa-sha2-512", "ssh-rsa"] if isinstance(user_key, rsa.RSAPublicKey) else ["ssh-ed25519"]
    )
    if valid_after is None:
        # One start for all of them, even if the clock turns a second between two.
        valid_after = (timezone.now() - CLOCK_SKEW).replace(microsecond=0)
    with transaction.atomic():
        return [
            certificate_issue(
                public_key=public_key,
                principal=principal,
                valid_before=valid_before,
                key_id=key_id,
                signature_algorithm=algorithm,
                valid_after=valid_after,
                actor=actor,
                account=account,
                request_id=request_id,
                instance_ids=instance_ids,
                host_ca_fingerprints=host_ca_fingerprints,
            )
            for algorithm in algorithms
        ]
