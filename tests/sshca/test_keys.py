"""CA keys: created on first use, encrypted at rest, rotated without lockout, retired."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from time_machine import TimeMachineFixture

from audit.models import LogbookEntry
from sshca.crypto import CaKeyDecryptionError
from sshca.errors import CaKeyStateError
from sshca.models import CaKey
from sshca.services import (
    ca_authorized_keys_lines,
    ca_key_ensure,
    ca_keys_ensure,
    ca_retire,
    ca_rotate,
    ca_trusted_public_keys,
    certificate_issue,
)
from sshca.services.keys import _ca_private_key
from tests.conftest import World
from tests.passport_portal.production_env import PRODUCTION_LOGBOOK_ENV, PRODUCTION_MAIL_ENV, secret_for_tests
from tests.sshca.conftest import ALICE_PRINCIPAL, UserKeys

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def _issue(user_keys: UserKeys, **overrides: object) -> str:
    arguments: dict[str, object] = {
        "public_key": user_keys.ed25519.public_line,
        "principal": ALICE_PRINCIPAL,
        "valid_before": timezone.now() + timedelta(hours=1),
        "key_id": "request 1 alice",
    }
    arguments.update(overrides)
    return certificate_issue(**arguments)  # type: ignore[arg-type]


def _signer_fingerprint(line: str) -> str:
    from sshca.crypto import sha256_fingerprint

    certificate = serialization.load_ssh_public_identity(line.encode())
    assert isinstance(certificate, serialization.SSHCertificate)
    return sha256_fingerprint(certificate.signature_key())


# --- first use --------------------------------------------------------------------------


def test_keys_are_created_on_first_use_and_then_reused() -> None:
    assert not CaKey.objects.exists()

    first = ca_key_ensure(key_type="ed25519")
    again = ca_key_ensure(key_type="ed25519")

    assert again.pk == first.pk
    assert first.state == CaKey.State.ACTIVE
    assert first.public_key.startswith("ssh-ed25519 ")
    assert first.fingerprint.startswith("SHA256:")
    assert CaKey.objects.count() == 1
    created = LogbookEntry.objects.filter(action="ca_key.created")
    assert [entry.detail["fingerprint"] for entry in created] == [first.fingerprint]


def test_issuing_creates_the_key_it_needs(user_keys: UserKeys) -> None:
    _issue(user_keys)
    _issue(user_keys)

    assert list(CaKey.objects.values_list("key_type", "state")) == [("ed25519", "active")]


def test_the_rsa_ca_key_has_4096_bits() -> None:
    key = ca_key_ensure(key_type="rsa")

    public = serialization.load_ssh_public_key(key.public_key.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 4096


def test_trusted_public_keys_creates_both_types_ed25519_first() -> None:
    lines = ca_trusted_public_keys()

    assert [line.split()[0] for line in lines] == ["ssh-ed25519", "ssh-rsa"]
    assert lines == [key.public_key for key in ca_keys_ensure()]


def test_authorized_keys_lines_limit_each_key_to_one_principal() -> None:
    lines = ca_authorized_keys_lines(principal=ALICE_PRINCIPAL)

    hosts = ("localhost", "127.0.0.1", "[::1]")
    opens = ",".join(f'permitopen="{host}:{port}"' for port in (22, 3389) for host in hosts)
    options = f'cert-authority,principals="{ALICE_PRINCIPAL}",{opens},permitlisten="localhost:1"'
    assert lines == [f"{options} {key}" for key in ca_trusted_public_keys()]


def test_authorized_keys_lines_open_forwards_to_the_ports_given_only() -> None:
    (line, *_) = ca_authorized_keys_lines(principal=ALICE_PRINCIPAL, forward_ports=[5432])

    assert line.startswith(
        f'cert-authority,principals="{ALICE_PRINCIPAL}",permitopen="localhost:5432",permitopen="127.0.0.1:5432",'
        'permitopen="[::1]:5432",permitlisten="localhost:1" '
    )


# --- encryption at rest -----------------------------------------------------------------


def _stored_blob(key: CaKey) -> bytes:
    # Read past the ORM, as someone with a database dump would.
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(CaKey._meta.db_table)
        cursor.execute(f"SELECT private_key_encrypted FROM {table} WHERE id = %s", [key.pk])  # noqa: S608
        (value,) = cursor.fetchone()
    return bytes(value)


@pytest.mark.parametrize("key_type", ["ed25519", "rsa"])
def test_the_private_key_is_not_stored_in_plaintext(key_type: str) -> None:
    key = ca_key_ensure(key_type=key_type)  # type: ignore[arg-type]
    private_key = _ca_private_key(key)
    der = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if isinstance(private_key, rsa.RSAPrivateKey):
        secret_part = private_key.private_numbers().d.to_bytes(512, "big").lstrip(b"\0")
    else:
        secret_part = private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    blob = _stored_blob(key)

    assert der not in blob
    assert secret_part[:16] not in blob
    assert b"PRIVATE KEY" not in blob and b"openssh-key-v1" not in blob
    assert len(blob) == 12 + len(der) + 16  # nonce, ciphertext, GCM tag


def test_a_wrong_encryption_key_is_a_clear_error(user_keys: UserKeys) -> None:
    _issue(user_keys)

    with (
        override_settings(PASSPORT_CA_ENCRYPTION_KEY="not-the-key-these-were-encrypted-with"),
        pytest.raises(CaKeyDecryptionError, match="PASSPORT_CA_ENCRYPTION_KEY is not the key it was encrypted with"),
    ):
        _issue(user_keys)


def test_keys_decrypt_again_with_the_right_key(user_keys: UserKeys) -> None:
    with override_settings(PASSPORT_CA_ENCRYPTION_KEY="first-secret-0123456789abcdef0123"):
        first = _issue(user_keys)
        again = _issue(user_keys)

    assert _signer_fingerprint(first) == _signer_fingerprint(again)


def test_a_ciphertext_moved_to_another_key_row_does_not_decrypt() -> None:
    victim = ca_key_ensure(key_type="ed25519")
    other = ca_rotate(key_type="ed25519")
    CaKey.objects.filter(pk=other.pk).update(private_key_encrypted=_stored_blob(victim))
    other.refresh_from_db()

    with pytest.raises(CaKeyDecryptionError):
        _ca_private_key(other)


def _production_settings(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PASSPORT_ENV": "production",
        "PASSPORT_SECRET_KEY": secret_for_tests("PASSPORT_SECRET_KEY", 50),
        "PASSPORT_USERNAME_KEY": secret_for_tests("PASSPORT_USERNAME_KEY", 32),
        "PASSPORT_ALLOWED_HOSTS": "passport.example.test",
        "DATABASE_URL": "postgres://passport@db.example.test/passport",
        "REDIS_URL": "redis://redis.example.test:6379/0",
        **PRODUCTION_LOGBOOK_ENV,
        **PRODUCTION_MAIL_ENV,
        **extra,
    }
    code = "import passport_portal.settings as s; print(len(s.PASSPORT_CA_ENCRYPTION_KEY))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_production_requires_the_encryption_key(tmp_path: Path) -> None:
    missing = _production_settings(tmp_path)
    too_short = _production_settings(tmp_path, PASSPORT_CA_ENCRYPTION_KEY="short")
    key_file = tmp_path / "ca-key"
    key_file.write_text(secret_for_tests("PASSPORT_CA_ENCRYPTION_KEY", 40) + "\n")
    from_file = _production_settings(tmp_path, PASSPORT_CA_ENCRYPTION_KEY_FILE=str(key_file))

    assert missing.returncode != 0
    assert "PASSPORT_CA_ENCRYPTION_KEY is required" in missing.stderr
    assert too_short.returncode != 0
    assert "at least 32 characters" in too_short.stderr
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout.strip() == "40"


# --- rotation ---------------------------------------------------------------------------


def test_rotation_keeps_the_old_key_trusted_and_signs_with_the_new(user_keys: UserKeys, world: World) -> None:
    old = ca_key_ensure(key_type="ed25519")
    before = _issue(user_keys)

    new = ca_rotate(key_type="ed25519", actor=world.approver)
    after = _issue(user_keys)
    old.refresh_from_db()

    assert old.state == CaKey.State.TRUSTED and old.demoted_at is not None
    assert new.state == CaKey.State.ACTIVE
    assert _signer_fingerprint(before) == old.fingerprint
    assert _signer_fingerprint(after) == new.fingerprint
    trusted = ca_trusted_public_keys()
    assert trusted[:2] == [new.public_key, old.public_key]  # the signing key first
    assert len(trusted) == 3  # and the RSA key
    entry = LogbookEntry.objects.get(action="ca_key.rotated")
    assert entry.actor == world.approver
    assert entry.detail["previous_fingerprint"] == old.fingerprint


def test_rotating_a_type_with_no_key_yet_just_creates_one() -> None:
    key = ca_rotate(key_type="rsa")

    assert list(CaKey.objects.values_list("pk", "state")) == [(key.pk, "active")]


def test_a_third_trusted_key_is_refused() -> None:
    ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="ed25519")

    with pytest.raises(CaKeyStateError, match="still trusted: retire it"):
        ca_rotate(key_type="ed25519")
    assert CaKey.objects.filter(state__in=["active", "trusted"]).count() == 2


def test_rotating_one_type_leaves_the_other_alone() -> None:
    rsa_key = ca_key_ensure(key_type="rsa")
    ca_key_ensure(key_type="ed25519")

    ca_rotate(key_type="ed25519")

    rsa_key.refresh_from_db()
    assert rsa_key.state == CaKey.State.ACTIVE


# --- retirement -------------------------------------------------------------------------


def test_the_active_key_cannot_be_retired() -> None:
    key = ca_key_ensure(key_type="ed25519")

    with pytest.raises(CaKeyStateError, match="rotate it before retiring"):
        ca_retire(fingerprint=key.fingerprint)


def test_retiring_a_key_whose_certificates_are_still_valid_needs_force(user_keys: UserKeys, world: World) -> None:
    old = ca_key_ensure(key_type="ed25519")
    _issue(user_keys)
    ca_rotate(key_type="ed25519")

    with pytest.raises(CaKeyStateError, match="still valid"):
        ca_retire(fingerprint=old.fingerprint)
    retired = ca_retire(fingerprint=old.fingerprint, force=True, actor=world.approver)

    assert retired.state == CaKey.State.RETIRED and retired.retired_at is not None
    assert old.public_key not in ca_trusted_public_keys()
    entry = LogbookEntry.objects.get(action="ca_key.retired")
    assert entry.detail == {
        "key_type": "ed25519",
        "fingerprint": old.fingerprint,
        "forced": True,
        "valid_certificates": 1,
    }


def test_once_its_certificates_expired_a_key_retires_without_force(
    user_keys: UserKeys, time_machine: TimeMachineFixture
) -> None:
    time_machine.move_to(timezone.now(), tick=False)
    old = ca_key_ensure(key_type="ed25519")
    _issue(user_keys, valid_before=timezone.now() + timedelta(hours=2))
    ca_rotate(key_type="ed25519")

    time_machine.shift(timedelta(hours=2, seconds=1))
    retired = ca_retire(fingerprint=old.fingerprint)

    assert retired.state == CaKey.State.RETIRED
    # A rotation is possible again: the trusted slot is free.
    ca_rotate(key_type="ed25519")


def test_retiring_twice_is_a_no_op() -> None:
    old = ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="ed25519")
    ca_retire(fingerprint=old.fingerprint)

    again = ca_retire(fingerprint=old.fingerprint)

    assert again.state == CaKey.State.RETIRED
    assert LogbookEntry.objects.filter(action="ca_key.retired").count() == 1


def test_retiring_an_unknown_fingerprint_is_an_error() -> None:
    with pytest.raises(CaKeyStateError, match="No CA key"):
        ca_retire(fingerprint="SHA256:" + "A" * 43)


@pytest.mark.parametrize(
    "fingerprint",
    [
        "SHA256:\x00",  # PostgreSQL's DataError, a traceback from ca_keys retire
        "SHA256:nope",
        "SHA256:" + "A" * 42,
        "SHA256:" + "A" * 43 + "=",
        "SHA256:" + "A" * 43 + "\n",
        "MD5:" + "A" * 43,
        "",
    ],
)
def test_the_command_refuses_what_is_not_a_fingerprint(fingerprint: str) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    old = ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="ed25519")

    with pytest.raises(CommandError, match=r"is not a key fingerprint: SHA256: and 43 characters of base64"):
        call_command("ca_keys", "retire", fingerprint, stdout=StringIO())

    assert CaKey.objects.get(pk=old.pk).state == CaKey.State.TRUSTED
    assert not LogbookEntry.objects.filter(action="ca_key.retired").exists()


def test_the_private_key_never_shows_in_repr() -> None:
    key = ca_key_ensure(key_type="ed25519")

    assert "private" not in repr(key) and "private" not in str(key)


def test_the_management_command_rotates_lists_and_retires() -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    old = ca_key_ensure(key_type="ed25519")
    call_command("ca_keys", "rotate", "--key-type", "ed25519", stdout=StringIO())
    call_command("ca_keys", "retire", old.fingerprint, stdout=StringIO())
    listing = StringIO()
    call_command("ca_keys", "list", stdout=listing)

    assert f"ed25519  retired  {old.fingerprint}" in listing.getvalue()
    assert listing.getvalue().count(" active ") == 2
    with pytest.raises(CommandError, match="rotate it before retiring"):
        active = CaKey.objects.get(key_type="ed25519", state="active")
        call_command("ca_keys", "retire", active.fingerprint, stdout=StringIO())
