"""Fixtures for the CA tests: quick RSA CA keys, user key pairs, ssh-keygen's view of a
certificate, and a real OpenSSH sshd in a private local host.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from devcloud.localhost import LocalHosts
from sshca import crypto
from sshca.services import ca_authorized_keys_lines
from sshca.services import keys as ca_keys
from tests.sshd import LoopbackSshd, sshd_available

# Two people's Passport usernames on the test host (valid per core.usernames).
ALICE = "rs-alicexyz"
BOB = "rs-bobbyxyz"
# The principal of each one's grant on the test host: what certificates name, and the one
# principal each user's authorized_keys accepts.
ALICE_PRINCIPAL = "grant-a11ce000-0000-4000-8000-000000000001"
BOB_PRINCIPAL = "grant-b0b00000-0000-4000-8000-000000000002"
PRINCIPALS = {ALICE: ALICE_PRINCIPAL, BOB: BOB_PRINCIPAL}
HOST_ID = "i-05c0ffee5c0ffee01"

# Accepts ssh-rsa (SHA-1) certificates besides OpenSSH 9.2's defaults.
LEGACY_SSHD_OPTIONS = "PubkeyAcceptedAlgorithms +ssh-rsa-cert-v01@openssh.com\nCASignatureAlgorithms +ssh-rsa\n"
# Stands in for a server older than OpenSSH 7.2: it knows no RSA CA signature but ssh-rsa.
SHA1_ONLY_SSHD_OPTIONS = (
    "PubkeyAcceptedAlgorithms +ssh-rsa-cert-v01@openssh.com\nCASignatureAlgorithms ssh-ed25519,ssh-rsa\n"
)

# --- CA keys ----------------------------------------------------------------------------

# RSA-4096 generation takes about a second, and rolled-back tests would pay it again and
# again. Keys made once by the real generator are handed out instead: each test gets
# pool[0], pool[1], ... in order, so keys within a test are still distinct.
_RSA_POOL: list[crypto.CaPrivateKey] = []
_POOL_LOCK = threading.Lock()


@pytest.fixture(autouse=True)
def pooled_rsa_ca_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    real_generate = crypto.generate_private_key
    used = 0

    def generate(key_type: str) -> crypto.CaPrivateKey:
        nonlocal used
        if key_type != "rsa":
            return real_generate(key_type)
        with _POOL_LOCK:
            if used == len(_RSA_POOL):
                _RSA_POOL.append(real_generate("rsa"))
            key = _RSA_POOL[used]
            used += 1
        return key

    monkeypatch.setattr(ca_keys, "generate_private_key", generate)


# --- user keys --------------------------------------------------------------------------


@dataclass(frozen=True)
class UserKey:
    """A person's key pair, as files the ssh client can use and as strings."""

    name: str
    private_key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    private_openssh: str
    public_line: str
    identity_file: Path


def _user_key(directory: Path, name: str, private_key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> UserKey:
    private_openssh = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public_line = crypto.public_key_line(private_key.public_key()) + f" {name}@laptop"
    # A directory per key: ssh also loads "<identity>-cert.pub" by itself, which must
    # never slip a certificate into a test that meant to offer none or another.
    key_dir = directory / name
    key_dir.mkdir()
    identity_file = key_dir / "id"
    identity_file.write_text(private_openssh)
    identity_file.chmod(0o600)
    return UserKey(name, private_key, private_openssh, public_line, identity_file)


@dataclass(frozen=True)
class UserKeys:
    ed25519: UserKey
    rsa: UserKey


@pytest.fixture(scope="session")
def user_keys(tmp_path_factory: pytest.TempPathFactory) -> UserKeys:
    directory = tmp_path_factory.mktemp("user-keys")
    return UserKeys(
        ed25519=_user_key(directory, "ed25519", ed25519.Ed25519PrivateKey.generate()),
        rsa=_user_key(directory, "rsa", rsa.generate_private_key(public_exponent=65537, key_size=3072)),
    )


@pytest.fixture
def write_certificate(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a certificate line to its own file (never '<identity>-cert.pub')."""

    def write(name: str, line: str) -> Path:
        path = tmp_path / f"{name}.cert"
        path.write_text(line + "\n")
        return path

    return write


# --- ssh-keygen's view ------------------------------------------------------------------


@dataclass(frozen=True)
class KeygenListing:
    """What ``ssh-keygen -L`` prints about a certificate, field by field."""

    fields: dict[str, str]
    lists: dict[str, list[str]]
    raw: str

    @property
    def signing_algorithm(self) -> str:
        match = re.search(r"\(using ([\w@.-]+)\)", self.fields["Signing CA"])
        assert match, self.fields["Signing CA"]
        return match.group(1)

    @property
    def valid_range(self) -> tuple[datetime, datetime]:
        match = re.fullmatch(r"from (\S+) to (\S+)", self.fields["Valid"])
        assert match, self.fields["Valid"]
        start, end = (datetime.fromisoformat(text).replace(tzinfo=UTC) for text in match.groups())
        return start, end


def keygen_list(line: str, directory: Path) -> KeygenListing:
    """Parse a certificate with OpenSSH's own code; it also checks the CA's signature."""
    path = directory / "listed.cert"
    path.write_text(line + "\n")
    completed = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}
    )
    if completed.returncode != 0:
        raise AssertionError(f"ssh-keygen -L refused the certificate: {completed.stderr.strip()}")
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    current = ""
    for raw_line in completed.stdout.splitlines()[1:]:
        indent = len(raw_line) - len(raw_line.lstrip())
        text = raw_line.strip()
        if indent > 8 and current:
            lists.setdefault(current, []).append(text)
            continue
        current, _, value = text.partition(":")
        fields[current] = value.strip()
        lists.setdefault(current, [])
    return KeygenListing(fields, lists, completed.stdout)


# --- a real sshd ------------------------------------------------------------------------


@dataclass
class SshHost:
    """One local host (its own users) served by three sshd with different RSA policies."""

    modern: LoopbackSshd  # OpenSSH 9.2 defaults: no ssh-rsa (SHA-1) signatures
    legacy: LoopbackSshd  # 9.2 plus ssh-rsa, as an admin of an old fleet might allow
    sha1_only: LoopbackSshd  # like OpenSSH < 7.2: RSA CA signatures only with ssh-rsa

    @property
    def daemons(self) -> tuple[LoopbackSshd, ...]:
        return (self.modern, self.legacy, self.sha1_only)

    def port(self, daemon: LoopbackSshd) -> int:
        assert daemon.port is not None
        return daemon.port


@pytest.fixture(scope="session")
def ssh_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    reason = sshd_available()
    if reason is not None:
        pytest.skip(f"no real sshd here: {reason}")
    hosts = LocalHosts(tmp_path_factory.mktemp("sshca-hosts"))
    host = SshHost(
        modern=LoopbackSshd(hosts, HOST_ID, name="modern"),
        legacy=LoopbackSshd(hosts, HOST_ID, name="legacy"),
        sha1_only=LoopbackSshd(hosts, HOST_ID, name="sha1-only"),
    )
    try:
        for username in (ALICE, BOB):
            host.modern.add_user(username)
        host.modern.start()
        host.legacy.start(config_extra=LEGACY_SSHD_OPTIONS)
        host.sha1_only.start(config_extra=SHA1_ONLY_SSHD_OPTIONS)
        yield host
    finally:
        for daemon in host.daemons:
            daemon.stop()
        hosts.close()


@pytest.fixture
def trusting_host(ssh_host: SshHost, db: None) -> SshHost:
    """The host with each user's authorized_keys as provisioning writes them, from this test's CA."""
    for username in (ALICE, BOB):
        ssh_host.modern.set_authorized_keys(username, ca_authorized_keys_lines(principal=PRINCIPALS[username]))
    return ssh_host
