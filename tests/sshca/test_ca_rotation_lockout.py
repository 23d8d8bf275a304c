"""A rotation locks nobody out: until the refresh it queues lands on a host, that host's lines trust
only the keys they were written with, so a certificate for it is signed by the newest still-trusted
key among those (``host_ca_fingerprints``, a grant's ``key_ca_fingerprints``), checked here by a real
sshd. A retired key never signs, whatever the lines were written with; nothing recorded: the
active key signs. The SHA-2/SHA-1 and RSA/Ed25519 choice is the same as ever."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.utils import timezone

from audit.models import LogbookEntry
from sshca.crypto import sha256_fingerprint
from sshca.models import CaKey, IssuedCertificate
from sshca.services import (
    ca_authorized_keys_lines,
    ca_key_ensure,
    ca_key_fingerprints,
    ca_retire,
    ca_rotate,
    ca_trusted_public_keys,
    certificate_issue,
    certificates_for_key,
)
from tests.sshca.conftest import ALICE, ALICE_PRINCIPAL, SshHost, UserKey, UserKeys
from tests.sshd import openssh_run

pytestmark = pytest.mark.django_db

WriteCertificate = Callable[[str, str], Path]


def _issue(key: UserKey, host_ca_fingerprints: list[str] | None) -> str:
    return certificate_issue(
        public_key=key.public_line,
        principal=ALICE_PRINCIPAL,
        valid_before=timezone.now() + timedelta(hours=1),
        key_id="request 1 alice",
        host_ca_fingerprints=host_ca_fingerprints,
    )


def _logs_in(host: SshHost, key: UserKey, line: str, write_certificate: WriteCertificate, name: str) -> bool:
    result = openssh_run(
        port=host.port(host.modern),
        username=ALICE,
        identity_file=key.identity_file,
        certificate_file=[write_certificate(name, line)],
    )
    return result.ok and result.stdout.strip() == ALICE


def _signer(line: str) -> CaKey:
    """The CA key recorded for the certificate ``line`` (its serial), checked against its signature."""
    certificate = serialization.load_ssh_public_identity(line.encode())
    assert isinstance(certificate, serialization.SSHCertificate)
    key = IssuedCertificate.objects.select_related("ca_key").get(pk=certificate.serial).ca_key
    assert sha256_fingerprint(certificate.signature_key()) == key.fingerprint
    return key


def test_a_certificate_issued_right_after_a_rotation_logs_in(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate
) -> None:
    # The host's lines were written before the rotation (trusting_host: provisioning's lines of now).
    written = ca_key_fingerprints(ca_trusted_public_keys())
    old = ca_key_ensure(key_type="ed25519")
    new = ca_rotate(key_type="ed25519")
    # Right after the rotation, before the refresh task reached the host: the old key, still trusted, signs.
    line = _issue(user_keys.ed25519, written)
    assert _signer(line) == old
    assert _logs_in(trusting_host, user_keys.ed25519, line, write_certificate, "after-rotation"), "locked out"
    entry = LogbookEntry.objects.filter(action="certificate.issued").latest("id")
    assert entry.detail["ca_fingerprint"] == old.fingerprint  # which key signed is on record

    # The refresh lands: the lines trust both keys, and the new one signs from then on.
    trusting_host.modern.set_authorized_keys(ALICE, ca_authorized_keys_lines(principal=ALICE_PRINCIPAL))
    refreshed = ca_key_fingerprints(ca_trusted_public_keys())
    line = _issue(user_keys.ed25519, refreshed)
    assert _signer(line) == new
    assert _logs_in(trusting_host, user_keys.ed25519, line, write_certificate, "after-refresh")


def test_a_retired_key_never_signs_and_nothing_recorded_means_the_active_key(user_keys: UserKeys) -> None:
    written = ca_key_fingerprints(ca_trusted_public_keys())
    old = ca_key_ensure(key_type="ed25519")
    new = ca_rotate(key_type="ed25519")
    assert _signer(_issue(user_keys.ed25519, None)) == new
    assert _signer(_issue(user_keys.ed25519, [])) == new
    assert _signer(_issue(user_keys.ed25519, ["SHA256:not-a-key-of-this-ca"])) == new
    # A compromised key retired by force signs nothing, though the host's lines still name it.
    ca_retire(fingerprint=old.fingerprint, force=True)
    assert _signer(_issue(user_keys.ed25519, written)) == new


def test_an_rsa_key_gets_both_signatures_from_the_rsa_key_its_host_trusts(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate
) -> None:
    written = ca_key_fingerprints(ca_trusted_public_keys())
    old_rsa, ed25519 = ca_key_ensure(key_type="rsa"), ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="rsa")
    lines = certificates_for_key(
        public_key=user_keys.rsa.public_line,
        principal=ALICE_PRINCIPAL,
        valid_before=timezone.now() + timedelta(hours=1),
        key_id="request 1 alice",
        host_ca_fingerprints=written,
    )
    assert [_signer(line) for line in lines] == [old_rsa, old_rsa]
    issued = IssuedCertificate.objects.order_by("id").values_list("signature_algorithm", flat=True)
    assert list(issued) == ["rsa-sha2-512", "ssh-rsa"]
    assert _logs_in(trusting_host, user_keys.rsa, lines[0], write_certificate, "rsa-after-rotation")
    # An Ed25519 key still gets the Ed25519 CA's (unrotated) key.
    assert _signer(_issue(user_keys.ed25519, written)) == ed25519
