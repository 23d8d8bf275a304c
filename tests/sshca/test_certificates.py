"""Issuing user certificates: fields as OpenSSH and cryptography read them, refusals, serials, Logbook."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from django.db import connection
from django.utils import timezone
from time_machine import TimeMachineFixture

from audit.models import LogbookEntry
from sshca.crypto import sha256_fingerprint
from sshca.errors import CertificateRequestError
from sshca.models import CaKey, IssuedCertificate
from sshca.services import CLOCK_SKEW, certificate_issue, certificate_key_id, certificates_for_key
from tests.conftest import World
from tests.sshca.conftest import ALICE_PRINCIPAL, UserKey, UserKeys, keygen_list

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 24, 9, 30, 15, 250000, tzinfo=UTC)
EXTENSIONS = {b"permit-port-forwarding": b"", b"permit-pty": b""}


def _issue(public_key: str, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "public_key": public_key,
        "principal": ALICE_PRINCIPAL,
        "valid_before": timezone.now() + timedelta(hours=1),
        "key_id": "passport request 42 alice@example.test",
    }
    arguments.update(overrides)
    return certificate_issue(**arguments)


def _parsed(line: str) -> serialization.SSHCertificate:
    certificate = serialization.load_ssh_public_identity(line.encode())
    assert isinstance(certificate, serialization.SSHCertificate)
    return certificate


CASES = [
    ("ed25519", "ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"),
    ("ed25519", "rsa-sha2-512", "ssh-ed25519-cert-v01@openssh.com"),
    ("rsa", "rsa-sha2-512", "ssh-rsa-cert-v01@openssh.com"),
    ("rsa", "ssh-rsa", "ssh-rsa-cert-v01@openssh.com"),
    ("rsa", "ssh-ed25519", "ssh-rsa-cert-v01@openssh.com"),
]


@pytest.mark.parametrize(("user_key_type", "algorithm", "cert_type"), CASES)
def test_fields_as_ssh_keygen_reads_them(
    user_keys: UserKeys,
    tmp_path: Path,
    time_machine: TimeMachineFixture,
    user_key_type: str,
    algorithm: str,
    cert_type: str,
) -> None:
    time_machine.move_to(T0, tick=False)
    user_key: UserKey = getattr(user_keys, user_key_type)
    valid_before = T0 + timedelta(hours=8, minutes=5)

    line = _issue(user_key.public_line, valid_before=valid_before, signature_algorithm=algorithm)
    listing = keygen_list(line, tmp_path)

    ca_key = CaKey.objects.get(state="active", key_type="ed25519" if algorithm == "ssh-ed25519" else "rsa")
    record = IssuedCertificate.objects.get()
    assert line.split()[0] == cert_type
    assert listing.fields["Type"] == f"{cert_type} user certificate"
    assert listing.fields["Public key"].endswith(sha256_fingerprint(user_key.private_key.public_key()))
    assert listing.fields["Signing CA"].split()[1] == ca_key.fingerprint
    assert listing.signing_algorithm == algorithm
    assert listing.fields["Key ID"] == '"passport request 42 alice@example.test"'
    assert listing.fields["Serial"] == str(record.serial)
    assert listing.lists["Principals"] == [ALICE_PRINCIPAL]
    assert listing.fields["Critical Options"] == "(none)"
    assert listing.lists["Extensions"] == ["permit-port-forwarding", "permit-pty"]
    # Whole seconds: from a minute before issue (clock skew) to the requested end.
    assert listing.valid_range == (T0.replace(microsecond=0) - CLOCK_SKEW, valid_before.replace(microsecond=0))


@pytest.mark.parametrize(("user_key_type", "algorithm", "cert_type"), CASES)
def test_fields_as_cryptography_reads_them(
    user_keys: UserKeys, time_machine: TimeMachineFixture, user_key_type: str, algorithm: str, cert_type: str
) -> None:
    time_machine.move_to(T0, tick=False)
    user_key: UserKey = getattr(user_keys, user_key_type)
    valid_before = T0 + timedelta(hours=13)  # the longest allowed

    certificate = _parsed(_issue(user_key.public_line, valid_before=valid_before, signature_algorithm=algorithm))

    certificate.verify_cert_signature()  # raises if the CA signature does not verify
    ca_key = CaKey.objects.get(state="active", key_type="ed25519" if algorithm == "ssh-ed25519" else "rsa")
    assert sha256_fingerprint(certificate.signature_key()) == ca_key.fingerprint
    assert sha256_fingerprint(certificate.public_key()) == sha256_fingerprint(user_key.private_key.public_key())
    assert certificate.type == serialization.SSHCertificateType.USER
    assert certificate.valid_principals == [ALICE_PRINCIPAL.encode()]
    assert certificate.key_id == b"passport request 42 alice@example.test"
    assert certificate.serial == IssuedCertificate.objects.get().serial
    assert certificate.valid_after == int(T0.timestamp()) - 60
    assert certificate.valid_before == int(valid_before.timestamp())
    assert certificate.critical_options == {}
    assert certificate.extensions == EXTENSIONS


def test_the_sha1_certificate_says_ssh_rsa_and_its_signature_verifies(user_keys: UserKeys, tmp_path: Path) -> None:
    line = _issue(user_keys.rsa.public_line, signature_algorithm="ssh-rsa")

    listing = keygen_list(line, tmp_path)
    certificate = _parsed(line)

    # ssh-keygen -L prints the CA signature's algorithm after the CA: "(using ssh-rsa)".
    assert listing.fields["Signing CA"].startswith("RSA SHA256:")
    assert listing.fields["Signing CA"].endswith("(using ssh-rsa)")
    certificate.verify_cert_signature()


def test_certificates_for_an_rsa_key_are_sha2_then_sha1(user_keys: UserKeys, tmp_path: Path) -> None:
    lines = certificates_for_key(
        public_key=user_keys.rsa.public_line,
        principal=ALICE_PRINCIPAL,
        valid_before=timezone.now() + timedelta(hours=1),
        key_id="request 7",
    )

    assert [keygen_list(line, tmp_path).signing_algorithm for line in lines] == ["rsa-sha2-512", "ssh-rsa"]
    serials = [_parsed(line).serial for line in lines]
    assert len(set(serials)) == 2
    assert {_parsed(line).signature_key().public_numbers() for line in lines} == {  # type: ignore[union-attr]
        serialization.load_ssh_public_key(CaKey.objects.get(key_type="rsa").public_key.encode()).public_numbers()  # type: ignore[union-attr]
    }


@pytest.mark.parametrize("key_kind", ["ed25519", "ecdsa"])
def test_certificates_for_other_keys_are_one_from_the_ed25519_ca(
    user_keys: UserKeys, tmp_path: Path, key_kind: str
) -> None:
    if key_kind == "ed25519":
        public_line = user_keys.ed25519.public_line
    else:
        public_line = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )

    lines = certificates_for_key(
        public_key=public_line,
        principal=ALICE_PRINCIPAL,
        valid_before=timezone.now() + timedelta(hours=1),
        key_id="request 7",
    )

    assert len(lines) == 1
    assert keygen_list(lines[0], tmp_path).signing_algorithm == "ssh-ed25519"


# --- refusals -----------------------------------------------------------------------------

HOSTILE_PRINCIPALS = [
    "",
    "root",
    "ubuntu",
    "rs-ABCDEFGH",
    "rs-abcdefg1",  # 1 is not base32
    "rs-abcdefgh ",
    " rs-abcdefgh",
    "rs-abcdefgh\n",
    "rs-abcdefgh,root",
    'rs-abcdefgh",command="/bin/sh',
    "rs-abcdefgh-abc",
    "rs-abcdefgh-abcd-efgh",
    "rs-abcdefgh\x00",
    "grant-A11CE000-0000-4000-8000-000000000001",
    "grant-a11ce000-0000-4000-8000-000000000001 ",
    'grant-a11ce000-0000-4000-8000-000000000001",command="/bin/sh',
    "grant-a11ce000-0000-4000-8000-000000000001,grant-b0b00000-0000-4000-8000-000000000002",
    "grant-*",
    "*",
    None,
]


@pytest.mark.parametrize("principal", HOSTILE_PRINCIPALS)
def test_hostile_principals_are_refused(user_keys: UserKeys, principal: Any) -> None:
    with pytest.raises(CertificateRequestError, match="principal"):
        _issue(user_keys.ed25519.public_line, principal=principal)

    assert not IssuedCertificate.objects.exists()
    assert not LogbookEntry.objects.filter(action="certificate.issued").exists()


@pytest.mark.parametrize("username", ["rs-abcdefgh", "rs-abcdefgh-wxyz"])
def test_a_username_is_not_a_principal(user_keys: UserKeys, username: str) -> None:
    """Certificates name a grant: one for the person's username would log in under any of their grants."""
    with pytest.raises(CertificateRequestError, match="principal"):
        _issue(user_keys.ed25519.public_line, principal=username)


HOSTILE_KEY_IDS = [
    "",
    "x" * 201,
    "a\nb",
    "a\rb",
    "a\x00b",
    "a\tb",
    "\x1b[31mred",
    "caf\u00e9",
    "alice\u202egnp.exe",  # right-to-left override
    "\ud800",  # a lone surrogate
    None,
    42,
]


@pytest.mark.parametrize("key_id", HOSTILE_KEY_IDS)
def test_hostile_key_ids_are_refused(user_keys: UserKeys, key_id: Any) -> None:
    with pytest.raises(CertificateRequestError, match="key id"):
        _issue(user_keys.ed25519.public_line, key_id=key_id)

    assert not IssuedCertificate.objects.exists()


def test_the_key_id_helper_names_grant_request_instance_and_person_in_ascii(user_keys: UserKeys, world: World) -> None:
    world.requester.username = "j\u00f6rg\n<script> x"
    world.requester.save()
    grant_uid = "a11ce000-0000-4000-8000-000000000001"

    key_id = certificate_key_id(grant_uid=grant_uid, request_id=42, instance_id="i-0abc", person=world.requester)
    line = _issue(user_keys.ed25519.public_line, key_id=key_id)

    # Non-ASCII is escaped; control characters and spaces inside a part become "?".
    assert key_id == (
        f"passport grant={grant_uid} request=42 instance=i-0abc person={world.requester.pk} j\\xf6rg?<script>?x"
    )
    assert _parsed(line).key_id == key_id.encode()


def test_the_key_id_helper_stays_within_200_characters(world: World) -> None:
    world.requester.username = "\u00e9" * 150
    world.requester.save()

    key_id = certificate_key_id(
        grant_uid="a11ce000-0000-4000-8000-000000000001",
        request_id=10**12,
        instance_id="i-0abc",
        person=world.requester,
    )
    assert len(key_id) == 200


def test_a_key_id_of_200_printable_characters_is_accepted(user_keys: UserKeys) -> None:
    key_id = ('request 1 "alice" <a@b> ' + "x" * 200)[:200]

    assert _parsed(_issue(user_keys.ed25519.public_line, key_id=key_id)).key_id == key_id.encode()


@pytest.mark.parametrize(
    ("valid_before", "message"),
    [
        (T0 - timedelta(seconds=1), "in the past"),
        (T0, "in the past"),
        (T0 + timedelta(hours=13, seconds=1), "at most 13:00:00"),
        (T0.replace(tzinfo=None) + timedelta(hours=1), "timezone-aware"),
        ("2026-11-24T12:00:00Z", "timezone-aware"),
    ],
)
def test_validity_out_of_bounds_is_refused(
    user_keys: UserKeys, time_machine: TimeMachineFixture, valid_before: Any, message: str
) -> None:
    time_machine.move_to(T0, tick=False)

    with pytest.raises(CertificateRequestError, match=message):
        _issue(user_keys.ed25519.public_line, valid_before=valid_before)


def _rsa_1024_line() -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key to refuse
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_bad_public_keys_are_refused(user_keys: UserKeys) -> None:
    good = user_keys.ed25519.public_line
    certificate = _issue(good)
    bad_keys: list[Any] = [
        "",
        "not a key",
        "ssh-ed25519 AAAA",
        f'command="/bin/sh" {good}',
        f"{good}\n{good}",
        certificate,  # a certificate is not a public key
        user_keys.ed25519.private_openssh,
        _rsa_1024_line(),
        None,
    ]
    for bad in bad_keys:
        with pytest.raises(CertificateRequestError):
            _issue(bad)


@pytest.mark.parametrize(
    ("algorithm", "ca_key_type", "message"),
    [
        ("ssh-dss", None, "Unknown signature algorithm"),
        ("rsa-sha2-256", None, "Unknown signature algorithm"),
        ("rsa-sha2-512", "ed25519", "cannot sign"),
        ("ssh-ed25519", "rsa", "cannot sign"),
    ],
)
def test_signature_algorithm_and_ca_must_agree(
    user_keys: UserKeys, algorithm: str, ca_key_type: str | None, message: str
) -> None:
    with pytest.raises(CertificateRequestError, match=message):
        _issue(user_keys.rsa.public_line, signature_algorithm=algorithm, ca_key_type=ca_key_type)


def test_an_explicit_matching_ca_key_type_is_fine(user_keys: UserKeys) -> None:
    line = _issue(user_keys.rsa.public_line, signature_algorithm="rsa-sha2-512", ca_key_type="rsa")

    assert _parsed(line).serial > 0


# --- Logbook ------------------------------------------------------------------------------


def test_every_certificate_is_in_the_logbook_without_key_material(user_keys: UserKeys, world: World) -> None:
    valid_before = timezone.now() + timedelta(hours=2)

    line = _issue(
        user_keys.rsa.public_line,
        signature_algorithm="ssh-rsa",
        valid_before=valid_before,
        actor=world.requester,
        account=world.prod,
        request_id=42,
    )

    entry = LogbookEntry.objects.get(action="certificate.issued")
    record = IssuedCertificate.objects.get()
    ca_key = CaKey.objects.get(key_type="rsa")
    assert entry.actor == world.requester
    assert entry.account_id == world.prod.account_id
    assert entry.request_id == 42
    assert entry.detail == {
        "serial": record.serial,
        "key_id": "passport request 42 alice@example.test",
        "principal": ALICE_PRINCIPAL,
        "valid_after": record.valid_after.isoformat(),
        "valid_before": valid_before.replace(microsecond=0).isoformat(),
        "ca_fingerprint": ca_key.fingerprint,
        "ca_key_type": "rsa",
        "signature_algorithm": "ssh-rsa",
        "public_key_fingerprint": sha256_fingerprint(user_keys.rsa.private_key.public_key()),
    }
    text = json.dumps(entry.detail)
    for material in (line.split()[1], user_keys.rsa.public_line.split()[1], ca_key.public_key.split()[1]):
        assert material[:40] not in text
    assert record.actor == world.requester and record.request_id == 42


def test_a_failed_issue_leaves_no_trace(user_keys: UserKeys) -> None:
    with pytest.raises(CertificateRequestError):
        _issue(user_keys.ed25519.public_line, key_id="bad\nid")

    assert not IssuedCertificate.objects.exists()
    assert not LogbookEntry.objects.filter(action="certificate.issued").exists()


# --- serials ------------------------------------------------------------------------------


def test_serials_are_unique_and_never_zero(user_keys: UserKeys) -> None:
    serials = [_parsed(_issue(user_keys.ed25519.public_line)).serial for _ in range(10)]
    serials += [_parsed(_issue(user_keys.rsa.public_line, signature_algorithm="ssh-rsa")).serial for _ in range(3)]

    assert len(set(serials)) == 13
    assert min(serials) > 0
    assert sorted(serials) == sorted(IssuedCertificate.objects.values_list("id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_serials_are_unique_across_concurrent_issuers(user_keys: UserKeys) -> None:
    """Eight issuers, each with its own database connection (as separate processes would have),
    start together on an empty CA: one first-use key wins and no serial repeats."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")
    threads, per_thread = 8, 5
    barrier = threading.Barrier(threads)
    lines: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def issuer() -> None:
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            for _ in range(per_thread):
                line = _issue(user_keys.ed25519.public_line)
                with lock:
                    lines.append(line)
        except BaseException as error:  # reported below, with the thread's traceback
            with lock:
                errors.append(error)
        finally:
            thread_connection.close()

    workers = [threading.Thread(target=issuer) for _ in range(threads)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert not errors, errors
        serials = [_parsed(line).serial for line in lines]
        assert len(serials) == threads * per_thread
        assert len(set(serials)) == len(serials)
        assert CaKey.objects.filter(key_type="ed25519").count() == 1
        assert {sha256_fingerprint(_parsed(line).signature_key()) for line in lines} == {
            CaKey.objects.get(key_type="ed25519").fingerprint
        }
        assert LogbookEntry.objects.filter(action="certificate.issued").count() == len(serials)
    finally:
        # The Logbook refuses TRUNCATE unless told, and the flush after this test needs it.
        with connection.cursor() as cursor:
            cursor.execute("SET passport.logbook_truncate = 'allow'")


def test_ed25519_user_key_material_round_trips(user_keys: UserKeys) -> None:
    # The certified key is the person's key, byte for byte.
    certificate = _parsed(_issue(user_keys.ed25519.public_line))
    certified = certificate.public_key()

    assert isinstance(certified, ed25519.Ed25519PublicKey)
    assert base64.b64decode(user_keys.ed25519.public_line.split()[1]).endswith(
        certified.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
