"""The host CA: separate from the user CA, signs host certificates that real OpenSSH pins."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.utils import timezone

from audit.models import LogbookEntry
from devcloud.localhost import LocalHosts
from sshca.crypto import CaKeyDecryptionError, sha256_fingerprint
from sshca.errors import CertificateRequestError
from sshca.models import CaKey, IssuedCertificate
from sshca.services import (
    ca_authorized_keys_lines,
    ca_key_ensure,
    ca_retire,
    ca_rotate,
    ca_trusted_public_keys,
    certificate_issue,
    host_ca_public_keys,
    host_certificate_issue,
)
from sshca.services.keys import _ca_private_key
from tests.conftest import World
from tests.sshca.conftest import ALICE, ALICE_PRINCIPAL, HOST_ID, UserKeys, keygen_list
from tests.sshd import SSH, SSH_KEYGEN, LoopbackSshd, sshd_available

pytestmark = pytest.mark.django_db


def _host_key(directory: Path, name: str = "host") -> tuple[Path, str]:
    path = directory / name
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path, (path.with_suffix(".pub")).read_text().strip()


def _signer(line: str) -> str:
    certificate = serialization.load_ssh_public_identity(line.encode())
    assert isinstance(certificate, serialization.SSHCertificate)
    return sha256_fingerprint(certificate.signature_key())


def test_the_host_ca_is_its_own_key_and_the_user_ca_never_publishes_it() -> None:
    host_lines = host_ca_public_keys()
    assert len(host_lines) == 1 and host_lines[0].startswith("ssh-ed25519 ")
    assert list(CaKey.objects.values_list("purpose", "key_type", "state")) == [("host", "ed25519", "active")]
    user_lines = ca_trusted_public_keys()
    assert host_lines[0] not in user_lines
    assert set(host_ca_public_keys()) == set(host_lines)  # no second key on the next call
    assert all(host_lines[0] not in line for line in ca_authorized_keys_lines(principal=ALICE_PRINCIPAL))
    entry = LogbookEntry.objects.get(action="ca_key.created", detail__purpose="host")
    assert entry.detail["fingerprint"] == CaKey.objects.get(purpose="host").fingerprint


def test_user_certificates_are_never_signed_by_the_host_ca(user_keys: UserKeys) -> None:
    host_ca_public_keys()  # the host CA exists first: the user CA must still be made and used
    line = certificate_issue(
        public_key=user_keys.ed25519.public_line,
        principal=ALICE_PRINCIPAL,
        valid_before=timezone.now() + timedelta(hours=1),
        key_id="request 1 alice",
    )
    user_key = CaKey.objects.get(purpose="user", key_type="ed25519", state="active")
    host_key = CaKey.objects.get(purpose="host", key_type="ed25519", state="active")
    assert _signer(line) == user_key.fingerprint != host_key.fingerprint


def test_a_host_certificate_is_a_host_certificate_from_the_host_ca(tmp_path: Path) -> None:
    _, public_line = _host_key(tmp_path)
    line = host_certificate_issue(
        public_key=public_line, principals=[HOST_ID, "proxy.example.com"], valid_seconds=600, key_id="proxy 1"
    )
    listing = keygen_list(line, tmp_path)
    assert "host certificate" in listing.fields["Type"]
    assert listing.lists["Principals"] == [HOST_ID, "proxy.example.com"]
    assert listing.fields["Key ID"] == '"proxy 1"'
    start, end = listing.valid_range
    assert timedelta(seconds=655) <= end - start <= timedelta(seconds=661)
    host_ca = CaKey.objects.get(purpose="host", state="active")
    assert _signer(line) == host_ca.fingerprint
    assert not CaKey.objects.filter(purpose="user").exists()  # nothing of the user CA was needed
    record = IssuedCertificate.objects.get()
    assert (record.ca_key_id, record.principal, record.request_id) == (host_ca.pk, f"{HOST_ID},proxy.example.com", None)
    assert f"serial {record.serial}" in listing.fields["Type"] or listing.fields["Serial"] == str(record.serial)
    entry = LogbookEntry.objects.get(action="host_certificate.issued")
    assert entry.detail["principals"] == [HOST_ID, "proxy.example.com"]
    assert entry.instance_ids.split() == [HOST_ID]
    assert "AAAA" not in str(entry.detail)  # fingerprints only, no key material


@pytest.mark.parametrize(
    "principals",
    [
        [],
        ["*"],
        ["i-*"],
        [f"{HOST_ID},evil.example.com"],
        ["host name"],
        [f"{HOST_ID}\nevil"],
        ["-oProxyCommand=x"],
        ["host.example.com:22"],
        [""],
        ["a" * 64],
        [f"i-{n:017x}" for n in range(40)],
    ],
)
def test_principals_that_are_not_instance_ids_or_host_names_are_refused(tmp_path: Path, principals: list[str]) -> None:
    _, public_line = _host_key(tmp_path)
    with pytest.raises(CertificateRequestError):
        host_certificate_issue(public_key=public_line, principals=principals, valid_seconds=60, key_id="proxy")
    assert not IssuedCertificate.objects.exists()


@pytest.mark.parametrize("valid_seconds", [0, -5, 13 * 3600 + 1, True])
def test_validity_must_be_positive_and_at_most_thirteen_hours(tmp_path: Path, valid_seconds: int) -> None:
    _, public_line = _host_key(tmp_path)
    with pytest.raises(CertificateRequestError, match="valid"):
        host_certificate_issue(public_key=public_line, principals=[HOST_ID], valid_seconds=valid_seconds, key_id="p")


def test_a_host_ca_key_never_decrypts_as_a_user_ca_key() -> None:
    host_ca_public_keys()
    host = CaKey.objects.get(purpose="host")
    user = ca_key_ensure(key_type="ed25519")
    # The host key's ciphertext moved onto a user row, with the host key's public half:
    # the associated data names the purpose, so it cannot be made to sign people's certificates.
    CaKey.objects.filter(pk=user.pk).update(
        private_key_encrypted=bytes(host.private_key_encrypted), fingerprint="SHA256:moved", public_key=host.public_key
    )
    user.refresh_from_db()
    with pytest.raises(CaKeyDecryptionError):
        _ca_private_key(user)


def test_host_ca_rotation_keeps_the_old_key_pinned_and_leaves_the_user_ca_alone(tmp_path: Path) -> None:
    user_before = ca_trusted_public_keys()
    (old,) = host_ca_public_keys()
    new = ca_rotate(key_type="ed25519", purpose="host")
    assert host_ca_public_keys() == [new.public_key, old]
    assert ca_trusted_public_keys() == user_before
    _, public_line = _host_key(tmp_path)
    assert _signer(
        host_certificate_issue(public_key=public_line, principals=[HOST_ID], valid_seconds=60, key_id="p")
    ) == (new.fingerprint)
    old_key = CaKey.objects.get(purpose="host", state="trusted")
    # The user CA's tools do not reach host keys.
    with pytest.raises(Exception, match="No CA key"):
        ca_retire(fingerprint=old_key.fingerprint)
    ca_retire(fingerprint=old_key.fingerprint, purpose="host", force=True)
    assert host_ca_public_keys() == [new.public_key]


# --- real OpenSSH pins it -------------------------------------------------------------------


@pytest.fixture(scope="module")
def host_cert_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    reason = sshd_available()
    if reason is not None:
        pytest.skip(f"no real sshd here: {reason}")
    hosts = LocalHosts(tmp_path_factory.mktemp("host-ca-hosts"))
    daemon = LoopbackSshd(hosts, HOST_ID, name="host-cert")
    try:
        daemon.add_user(ALICE)
        yield daemon
    finally:
        daemon.stop()
        hosts.close()


def _ssh(
    port: int, identity: Path, certificate: Path, known_hosts: Path, alias: str
) -> subprocess.CompletedProcess[str]:
    argv = [SSH, "-F", "/dev/null", "-i", str(identity), "-o", f"CertificateFile={certificate}"]
    for option in (
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        f"HostKeyAlias={alias}",
        "ConnectTimeout=10",
    ):
        argv += ["-o", option]
    argv += ["-p", str(port), f"{ALICE}@127.0.0.1", "whoami"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_openssh_accepts_the_host_certificate_only_under_its_pinned_ca_and_principal(
    host_cert_sshd: LoopbackSshd, user_keys: UserKeys, tmp_path: Path
) -> None:
    daemon = host_cert_sshd
    host_cert_sshd.stop()
    daemon.directory.mkdir(parents=True, exist_ok=True)
    host_key = daemon.directory / "ssh_host_ed25519_key"
    if not host_key.exists():
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    certificate = host_certificate_issue(
        public_key=Path(f"{host_key}.pub").read_text(), principals=[HOST_ID], valid_seconds=600, key_id="proxy"
    )
    certificate_path = daemon.directory / "ssh_host_ed25519_key-cert.pub"
    certificate_path.write_text(certificate + "\n")
    port = daemon.start(config_extra=f"HostCertificate {certificate_path}\n")
    daemon.set_authorized_keys(ALICE, ca_authorized_keys_lines(principal=ALICE_PRINCIPAL))
    user_certificate = tmp_path / "user.cert"
    user_certificate.write_text(
        certificate_issue(
            public_key=user_keys.ed25519.public_line,
            principal=ALICE_PRINCIPAL,
            valid_before=timezone.now() + timedelta(hours=1),
            key_id="alice",
        )
        + "\n"
    )
    identity = user_keys.ed25519.identity_file

    pinned = tmp_path / "known_hosts"
    pinned.write_text("".join(f"@cert-authority i-* {line}\n" for line in host_ca_public_keys()))
    accepted = _ssh(port, identity, user_certificate, pinned, HOST_ID)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == ALICE

    # Another instance's name: the certificate does not name it.
    other = _ssh(port, identity, user_certificate, pinned, "i-0123456789abcdef0")
    assert other.returncode != 0 and "Host key verification failed" in other.stderr

    # The user CA pinned as if it were the host CA: no trust, and no first-use prompt either.
    wrong = tmp_path / "known_hosts.user-ca"
    wrong.write_text("".join(f"@cert-authority i-* {line}\n" for line in ca_trusted_public_keys()))
    refused = _ssh(port, identity, user_certificate, wrong, HOST_ID)
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr


# --- the CA page and API keep the two CAs apart ------------------------------------------------


def test_the_ca_page_shows_the_host_ca_apart_and_the_user_ca_outputs_leave_it_out(world: World) -> None:
    from django.test import Client

    (host_line,) = host_ca_public_keys()
    client = Client()
    client.force_login(world.outsider)
    page = client.get("/ca/")
    body = page.content.decode()
    section = body[body.index('data-testid="host-ca"') :]
    assert host_line in section and "@cert-authority i-*" in section
    assert host_line not in body[: body.index('data-testid="host-ca"')]  # not among the user CA's keys
    assert all(key.purpose == "user" for key in page.context["keys"])
    listed = client.get("/api/ca/keys/").json()
    assert host_line not in [key["public_key"] for key in listed]
    assert host_line not in client.get("/api/ca/keys.txt").content.decode()
