"""Every change of the CA's keys: first use, rotation, retirement; what the hosts trust.

Rotation without lockout: per key type one key is ``active`` (signs) and at most one is
``trusted`` (still published; signs only for hosts not yet given the active key). Hosts are given
every active and trusted key (``ca_trusted_public_keys``), so a certificate signed before a rotation
keeps working until it expires; until a host's refresh lands, a grant's certificates are signed by
a key its lines were written with (``certificates._signing_key``). Only then is the old key retired.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable
from typing import Literal

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from accounts.ports import DEFAULT_FORWARD_PORTS
from audit.services import logbook_append
from core.dispatch import task_send
from fleet.ssh_keys import UnsafeScriptValue, grant_key_options
from sshca.crypto import (
    FINGERPRINT_RE,
    CaKeyDecryptionError,
    CaPrivateKey,
    decrypt_private_key,
    encrypt_private_key,
    generate_private_key,
    public_key_line,
    sha256_fingerprint,
)
from sshca.errors import CaKeyStateError, CertificateRequestError
from sshca.models import CaKey
from sshca.signals import ca_key_retired

logger = logging.getLogger(__name__)

CaKeyType = Literal["ed25519", "rsa"]
# "user": signs people's certificates; "host": signs the portal's host certificates.
CaKeyPurpose = Literal["user", "host"]


def _associated_data(*, key_type: str, key_fingerprint: str, purpose: str = "user") -> bytes:
    # The user CA's form predates purposes (stored keys decrypt with it); a host key's
    # ciphertext also names its purpose, so it never decrypts as a user CA key.
    if purpose == CaKey.Purpose.USER:
        return f"passport-sshca\n{key_type}\n{key_fingerprint}".encode()
    return f"passport-sshca\n{purpose}\n{key_type}\n{key_fingerprint}".encode()


def _new_key(key_type: str, purpose: str = "user") -> CaKey:
    """An unsaved CaKey with a fresh key pair; the private half only encrypted."""
    private_key = generate_private_key(key_type)
    public_key = private_key.public_key()
    key_fingerprint = sha256_fingerprint(public_key)
    return CaKey(
        purpose=purpose,
        key_type=key_type,
        state=CaKey.State.ACTIVE,
        public_key=public_key_line(public_key),
        fingerprint=key_fingerprint,
        private_key_encrypted=encrypt_private_key(
            private_key,
            associated_data=_associated_data(key_type=key_type, key_fingerprint=key_fingerprint, purpose=purpose),
        ),
    )


def _check_purpose(purpose: str) -> str:
    if purpose not in CaKey.Purpose.values:
        raise CaKeyStateError(f"Unknown CA purpose {purpose!r}: use one of {', '.join(CaKey.Purpose.values)}.")
    return purpose


def _detail(purpose: str, detail: dict[str, object]) -> dict[str, object]:
    # User CA entries keep the shape they always had; host CA entries say so.
    return detail if purpose == CaKey.Purpose.USER else {"purpose": purpose, **detail}


def _check_key_type(key_type: str) -> str:
    if key_type not in CaKey.KeyType.values:
        raise CaKeyStateError(f"Unknown CA key type {key_type!r}: use one of {', '.join(CaKey.KeyType.values)}.")
    return key_type


def ca_key_ensure(*, key_type: CaKeyType, purpose: CaKeyPurpose = "user") -> CaKey:
    """The active key of ``key_type`` (of the user CA, or the host CA), created on first use.

    Two processes may both find none: the partial unique index lets exactly one insert
    win, and the other reads the winner's key.
    """
    _check_key_type(key_type)
    _check_purpose(purpose)
    existing = CaKey.objects.filter(purpose=purpose, key_type=key_type, state=CaKey.State.ACTIVE).first()
    if existing is not None:
        return existing
    candidate = _new_key(key_type, purpose)  # RSA-4096 takes a second: before any lock is taken
    try:
        with transaction.atomic():
            candidate.save()
            logbook_append(
                action="ca_key.created",
                actor=None,
                detail=_detail(
                    purpose, {"key_type": key_type, "fingerprint": candidate.fingerprint, "state": candidate.state}
                ),
            )
    except IntegrityError:
        return CaKey.objects.get(purpose=purpose, key_type=key_type, state=CaKey.State.ACTIVE)
    logger.info("Created the %s %s CA key %s", key_type, purpose, candidate.fingerprint)
    return candidate


def ca_keys_ensure() -> list[CaKey]:
    """Both active user CA keys (Ed25519 and RSA), creating what is missing."""
    return [ca_key_ensure(key_type="ed25519"), ca_key_ensure(key_type="rsa")]


def ca_rotate(*, key_type: CaKeyType, actor: User | None = None, purpose: CaKeyPurpose = "user") -> CaKey:
    """Make a new active key of ``key_type`` (user CA by default) and demote the current one to trusted.

    Refused while a trusted key of that type still exists: a third trusted key would
    mean hosts trusting keys nobody plans to retire. Retire the trusted one first, once
    the certificates it signed have expired (at most 13 hours).
    """
    _check_key_type(key_type)
    _check_purpose(purpose)
    candidate = _new_key(key_type, purpose)
    with transaction.atomic():
        keys = CaKey.objects.select_for_update().filter(purpose=purpose, key_type=key_type)
        current = keys.filter(state=CaKey.State.ACTIVE).first()
        trusted = keys.filter(state=CaKey.State.TRUSTED).first()
        if trusted is not None:
            raise CaKeyStateError(
                f"The {key_type} {_ca_name(purpose)} key {trusted.fingerprint} is still trusted: "
                "retire it before rotating again."
            )
        if current is not None:
            current.state = CaKey.State.TRUSTED
            current.demoted_at = timezone.now()
            current.save(update_fields=["state", "demoted_at"])
        candidate.save()
        if purpose == CaKey.Purpose.USER:
            transaction.on_commit(_refresh_hosts)
        logbook_append(
            action="ca_key.rotated",
            actor=actor,
            detail=_detail(
                purpose,
                {
                    "key_type": key_type,
                    "fingerprint": candidate.fingerprint,
                    "previous_fingerprint": current.fingerprint if current is not None else None,
                },
            ),
        )
    logger.info("Rotated the %s %s CA key: %s signs now", key_type, purpose, candidate.fingerprint)
    return candidate


def _refresh_hosts() -> None:
    """Rewrite authorized_keys on every host with a live grant, so it trusts the CAs of now.

    Without it a host provisioned before a rotation would refuse certificates from the new
    key (a lockout), and after a retirement would keep trusting the retired one.
    """
    task_send("refresh_authorized_keys")


def _ca_name(purpose: str) -> str:
    return "CA" if purpose == CaKey.Purpose.USER else "host CA"


def ca_retire(
    *, fingerprint: str, actor: User | None = None, force: bool = False, purpose: CaKeyPurpose = "user"
) -> CaKey:
    """Stop trusting a (trusted, no longer signing) key of the user CA (or the host CA).

    Retiring a retired key is a no-op.

    The active key cannot be retired (rotate first, or nothing could sign). While a
    certificate the key signed is still valid, retiring would lock its holder out, so
    that needs ``force=True`` (for a compromised key). Either way, a user CA key's retirement
    ends the open terminals and CLI proxy connections that logged in with a certificate it
    signed (``sshca.signals.ca_key_retired``): one may outlive its certificates (its request extended).
    """
    _check_purpose(purpose)
    name = _ca_name(purpose)
    if not FINGERPRINT_RE.fullmatch(fingerprint):
        # Typed by an operator (ca_keys retire): a NUL in it was PostgreSQL's DataError, a traceback.
        raise CaKeyStateError(
            f"{fingerprint!r} is not a key fingerprint: SHA256: and 43 characters of base64, "
            "as 'ca_keys list' shows it."
        )
    with transaction.atomic():
        key = CaKey.objects.select_for_update().filter(purpose=purpose, fingerprint=fingerprint).first()
        if key is None:
            raise CaKeyStateError(f"No {name} key has the fingerprint {fingerprint!r}.")
        if key.state == CaKey.State.RETIRED:
            return key
        if key.state == CaKey.State.ACTIVE:
            raise CaKeyStateError(f"The {name} key {fingerprint} is active: rotate it before retiring it.")
        still_valid = key.certificates.filter(valid_before__gt=timezone.now()).count()
        if still_valid and not force:
            raise CaKeyStateError(
                f"The {name} key {fingerprint} signed {still_valid} certificate(s) that are still valid; "
                "retiring it now would lock their holders out (force it only for a compromised key)."
            )
        key.state = CaKey.State.RETIRED
        key.retired_at = timezone.now()
        key.save(update_fields=["state", "retired_at"])
        if purpose == CaKey.Purpose.USER:
            transaction.on_commit(_refresh_hosts)
            # Live connections it let in are not re-checked by sshd: they are ended (after commit).
            ca_key_retired.send(sender=CaKey, ca_key_id=key.pk, fingerprint=key.fingerprint)
        logbook_append(
            action="ca_key.retired",
            actor=actor,
            detail=_detail(
                purpose,
                {
                    "key_type": key.key_type,
                    "fingerprint": key.fingerprint,
                    "forced": bool(force),
                    "valid_certificates": still_valid,
                },
            ),
        )
    logger.info("Retired the %s %s CA key %s", key.key_type, purpose, key.fingerprint)
    return key


def ca_trusted_public_keys() -> list[str]:
    """Every active and trusted user CA public key line, Ed25519 first; creates missing keys.

    This is what hosts must trust: provisioning writes each line into authorized_keys
    as ``cert-authority,principals="<grant principal>" <line>`` (see ``ca_authorized_keys_lines``).
    """
    keys = _trusted_keys("user")  # one query on every provisioning: the keys exist but once
    if {key.key_type for key in keys if key.state == CaKey.State.ACTIVE} != set(CaKey.KeyType.values):
        ca_keys_ensure()
        keys = _trusted_keys("user")
    return [key.public_key for key in keys]


def ca_key_fingerprints(public_key_lines: Iterable[str]) -> list[str]:
    """The SHA256 fingerprints (as ``ssh-keygen -l`` prints them) of public key lines, sorted: what
    a host given these lines trusts, comparable with another set however each was ordered."""
    return sorted(
        "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(line.split()[1])).digest()).decode().rstrip("=")
        for line in public_key_lines
    )


def trusted_public_key_lines(*, purpose: CaKeyPurpose) -> list[str]:
    """The active and trusted public key lines of one CA, Ed25519 first, active before trusted."""
    return [key.public_key for key in _trusted_keys(purpose)]


def _trusted_keys(purpose: CaKeyPurpose) -> list[CaKey]:
    keys = CaKey.objects.filter(purpose=purpose, state__in=[CaKey.State.ACTIVE, CaKey.State.TRUSTED])
    type_order, state_order = {"ed25519": 0, "rsa": 1}, {"active": 0, "trusted": 1}
    return sorted(keys, key=lambda key: (type_order[key.key_type], state_order[key.state]))


def ca_authorized_keys_lines(
    *, principal: str, forward_ports: Iterable[int] = DEFAULT_FORWARD_PORTS, forward_destinations: Iterable[str] = ()
) -> list[str]:
    """authorized_keys lines that let certificates for ``principal`` (one grant's, and only it) log
    in, with forwards only to the instance's own ``forward_ports`` and to ``forward_destinations``
    (``host:port``) beyond it, as provisioning writes them."""
    try:
        options = grant_key_options(
            principal=principal, forward_ports=forward_ports, forward_destinations=forward_destinations
        )
    except UnsafeScriptValue as error:
        raise CertificateRequestError(str(error)) from None
    return [f"{options} {line}" for line in ca_trusted_public_keys()]


def _ca_private_key(key: CaKey) -> CaPrivateKey:
    private_key = decrypt_private_key(
        key.private_key_encrypted,
        associated_data=_associated_data(key_type=key.key_type, key_fingerprint=key.fingerprint, purpose=key.purpose),
    )
    # Belt and braces: never sign with a key that is not the one the hosts were given.
    if public_key_line(private_key.public_key()) != key.public_key:
        raise CaKeyDecryptionError(f"The stored private key does not match the CA key {key.fingerprint}.")
    return private_key
