"""The portal's own SSH login to an instance (terminal.bridge.LoginKeys, used by the browser terminal and
the CLI's recording proxy) against real OpenSSH 9.2 sshd configured as hosts that take no Ed25519 key.

Certificates come from the real CA (sshca.services.certificates_for_key) and each host trusts it as
provisioning sets it up (``cert-authority,principals=...`` in authorized_keys). The whole sessions
through devcloud are in test_login_keys_session.py and tests/terminal/proxy/test_rsa_hosts.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from cryptography.hazmat.primitives import serialization
from django.utils import timezone

from core.errors import RequestRuleError
from devcloud.localhost import LocalHosts
from sshca.errors import CertificateRequestError
from sshca.services import ca_authorized_keys_lines, certificates_for_key
from terminal.bridge import LoginKeys, Validity, connect_with
from tests.sshca.conftest import ALICE, ALICE_PRINCIPAL, HOST_ID, pooled_rsa_ca_keys  # noqa: F401
from tests.sshd import LoopbackSshd, sshd_available

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

# RHEL in FIPS mode, or an admin's choice: RSA with SHA-2 only, for keys and for CA signatures.
SHA2_RSA_ONLY = (
    "PubkeyAcceptedAlgorithms rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,"
    "rsa-sha2-512,rsa-sha2-256\nCASignatureAlgorithms rsa-sha2-512,rsa-sha2-256\n"
)
# An OpenSSH older than 6.5 (no Ed25519) and 7.2 (no RSA SHA-2): ssh-rsa certificates only.
SHA1_RSA_ONLY = "PubkeyAcceptedAlgorithms ssh-rsa-cert-v01@openssh.com,ssh-rsa\nCASignatureAlgorithms ssh-rsa\n"


@dataclass
class Hosts:
    modern: LoopbackSshd
    sha2_rsa_only: LoopbackSshd
    sha1_rsa_only: LoopbackSshd


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    local = LocalHosts(tmp_path_factory.mktemp("login-keys-hosts"))
    found = Hosts(
        modern=LoopbackSshd(local, HOST_ID, name="modern"),
        sha2_rsa_only=LoopbackSshd(local, HOST_ID, name="sha2-rsa-only"),
        sha1_rsa_only=LoopbackSshd(local, HOST_ID, name="sha1-rsa-only"),
    )
    try:
        found.modern.add_user(ALICE)
        found.modern.start()
        found.sha2_rsa_only.start(config_extra=SHA2_RSA_ONLY)
        found.sha1_rsa_only.start(config_extra=SHA1_RSA_ONLY)
        yield found
    finally:
        for daemon in (found.modern, found.sha2_rsa_only, found.sha1_rsa_only):
            daemon.stop()
        local.close()


@pytest.fixture
def trusting(hosts: Hosts) -> Hosts:
    """ALICE's authorized_keys trusts this test's CA keys (Ed25519 and RSA) for her grant's principal."""
    hosts.modern.set_authorized_keys(ALICE, ca_authorized_keys_lines(principal=ALICE_PRINCIPAL))
    return hosts


@dataclass
class Issuer:
    """The CA as the portal's hop asks it (one grant's principal until an hour from now), and what it was asked."""

    refuse_fallback: bool = False
    asked: list[tuple[str, Validity | None]] = field(default_factory=list)
    issued: list[list[str]] = field(default_factory=list)

    async def __call__(self, public_key: str, validity: Validity | None) -> list[str]:
        self.asked.append((public_key, validity))
        if self.refuse_fallback and len(self.asked) > 1:
            raise RequestRuleError("Credentials are issued only while the request is active and the user is ready.")
        valid_after, valid_before = validity if validity else (None, timezone.now() + timedelta(hours=1))
        lines = await sync_to_async(certificates_for_key, thread_sensitive=True)(
            public_key=public_key,
            principal=ALICE_PRINCIPAL,
            valid_before=valid_before,
            valid_after=valid_after,
            key_id="passport grant test",
        )
        self.issued.append(lines)
        return lines


def _log_in(daemon: LoopbackSshd, issuer: Issuer) -> tuple[str, LoginKeys]:
    """Log in as the browser terminal does (prepare, then connect_with) and run whoami."""

    async def attempt() -> tuple[str, LoginKeys]:
        keys = LoginKeys(issuer)
        await keys.prepare()
        assert daemon.port is not None
        async with await connect_with(
            keys,
            host="127.0.0.1",
            port=daemon.port,
            username=ALICE,
            known_hosts=None,
            agent_path=None,
            config=[],
            preferred_auth=["publickey"],
        ) as connection:
            result = await connection.run("whoami", check=True)
        return str(result.stdout).strip(), keys

    return async_to_sync(attempt)()


def _parsed(line: str) -> Any:
    certificate = serialization.load_ssh_public_identity(line.encode())
    assert isinstance(certificate, serialization.SSHCertificate)
    return certificate


def _serial(line: str) -> int:
    return int(_parsed(line).serial)


@pytest.mark.parametrize(
    ("daemon_name", "taken"),
    [("sha2_rsa_only", "rsa-sha2-512"), ("sha1_rsa_only", "ssh-rsa")],
)
def test_a_host_that_takes_no_ed25519_is_logged_in_to_with_rsa(
    trusting: Hosts, daemon_name: str, taken: str, tmp_path: Path
) -> None:
    daemon: LoopbackSshd = getattr(trusting, daemon_name)
    issuer = Issuer()
    mark = daemon.log_mark()

    whoami, keys = _log_in(daemon, issuer)

    assert whoami == ALICE
    assert keys.used_rsa
    # The Ed25519 certificate first; then an RSA key's SHA-2 and SHA-1 certificates, in that window.
    (ed25519_key, first), (rsa_key, validity) = issuer.asked
    assert ed25519_key.startswith("ssh-ed25519 ") and rsa_key.startswith("ssh-rsa ") and first is None
    [ed25519_line], rsa_lines = issuer.issued
    assert len(rsa_lines) == 2
    # sshd took the certificate whose CA signature it accepts: SHA-2 on the first host, SHA-1 on the old one.
    accepted = rsa_lines[0] if taken == "rsa-sha2-512" else rsa_lines[1]
    daemon.wait_for_log(rf"Accepted publickey for {ALICE} .*RSA-CERT .*serial {_serial(accepted)}\)", since=mark)
    # Exactly the Ed25519 certificate's principal, validity and options.
    model = _parsed(ed25519_line)
    assert validity is not None
    assert [int(moment.timestamp()) for moment in validity] == [model.valid_after, model.valid_before]
    for line in rsa_lines:
        certificate = _parsed(line)
        assert certificate.valid_principals == model.valid_principals == [ALICE_PRINCIPAL.encode()]
        assert (certificate.valid_after, certificate.valid_before) == (model.valid_after, model.valid_before)
        assert certificate.extensions == model.extensions and certificate.critical_options == model.critical_options
        assert certificate.key_id == model.key_id


def test_a_host_that_takes_ed25519_never_costs_an_rsa_key(trusting: Hosts) -> None:
    issuer = Issuer()
    mark = trusting.modern.log_mark()

    whoami, keys = _log_in(trusting.modern, issuer)

    assert whoami == ALICE and not keys.used_rsa
    assert len(issuer.asked) == 1 and issuer.asked[0][0].startswith("ssh-ed25519 ")
    trusting.modern.wait_for_log(rf"Accepted publickey for {ALICE} .*ED25519-CERT", since=mark)
    assert not re.search("Failed publickey", trusting.modern.log_since(mark))


def test_a_refused_rsa_certificate_is_the_reason_given(trusting: Hosts) -> None:
    """The request ended while the login fell back: that is what is said, not sshd's "permission denied"."""
    issuer = Issuer(refuse_fallback=True)

    with pytest.raises(RequestRuleError, match="only while the request is active") as raised:
        _log_in(trusting.sha2_rsa_only, issuer)

    assert isinstance(raised.value.__cause__, asyncssh.PermissionDenied)
    assert len(issuer.asked) == 2 and len(issuer.issued) == 1


def test_a_certificate_may_start_with_another_only_shortly_before_now() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    now = timezone.now()
    for valid_after in (now - timedelta(minutes=7), now + timedelta(seconds=5), datetime(2030, 1, 1)):
        with pytest.raises(CertificateRequestError, match="valid_after"):
            certificates_for_key(
                public_key=key,
                principal=ALICE_PRINCIPAL,
                valid_before=now + timedelta(hours=1),
                valid_after=valid_after,
                key_id="k",
            )
