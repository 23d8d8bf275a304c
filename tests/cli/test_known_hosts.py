"""The CLI pins the portal's host CA for recorded sessions: `@cert-authority` lines in its own
known_hosts and StrictHostKeyChecking=yes, no trust on first use; direct sessions keep accept-new.

The host CA lines come from the portal, so a hostile one (a newline, an option, another key type)
stops the command before anything is written. The pinning is checked by real OpenSSH against a
real sshd that shows a host certificate from the portal's host CA.
"""

from __future__ import annotations

import base64
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from core.usernames import grant_principal
from devcloud.localhost import LocalHosts
from passport_cli.errors import CliError
from passport_cli.known_hosts import host_ca_line, host_ca_lines, pin_host_cas, session_mode
from requests_app.models import Grant
from requests_app.services import certificate_principal
from sshca.models import CaKey
from sshca.services import ca_authorized_keys_lines, host_ca_public_keys, host_certificate_issue
from tests.cli.conftest import Cli
from tests.cli.helpers import active_grant
from tests.sshd import SSH_KEYGEN, LoopbackSshd, sshd_available

pytestmark = pytest.mark.usefixtures("live_db")

SOME_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _ssh_g(config: str, host: str) -> dict[str, str]:
    """OpenSSH's own reading of the config for ``host`` (`ssh -G` connects nowhere)."""
    shown = subprocess.run(["ssh", "-G", "-F", config, "--", host], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in shown.splitlines() if " " in line)


def test_record_mode_pins_the_host_ca_and_checks_strictly(cli: Cli) -> None:
    grant = active_grant(cli, "record")
    instance_id = grant.instance.instance_id
    known_hosts = cli.config_dir / "known_hosts"
    # What an earlier direct session left: a learned key for this instance (dropped: the host CA
    # alone vouches for it now), one for another host (kept), and an old pinned CA (replaced).
    learned_other = (
        "i-0123456789abcdef0 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    )
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    known_hosts.write_text(
        f"{instance_id} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxUq5pT6uGZkzHbU3dq1l0N3AuKxnH5ngMQ3VwDqLQ8\n"
        f"{learned_other}\n"
        "@cert-authority i-* ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRoaXMgaXMgYW4gb2xkIGNhIGtleSBwaW5uZWQhISE=\n"
    )

    config = cli.json("ssh-config")["path"]

    assert known_hosts.read_text() == f"{learned_other}\n" + "".join(
        f"@cert-authority i-* {line}\n" for line in host_ca_public_keys()
    )
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    for host in (instance_id, "web-1"):
        options = _ssh_g(config, host)
        assert options["stricthostkeychecking"] == "true"  # ssh -G's spelling of "yes"
        assert options["userknownhostsfile"] == str(known_hosts)
        assert options["globalknownhostsfile"] == "/dev/null"
        assert options["updatehostkeys"] == "false"
        assert options["hostname"] == instance_id  # what the @cert-authority i-* pattern and the certificate name


def test_direct_mode_keeps_accept_new_and_pins_nothing(cli: Cli) -> None:
    grant = active_grant(cli, "direct")
    config = cli.json("ssh-config")["path"]
    options = _ssh_g(config, grant.instance.instance_id)
    assert options["stricthostkeychecking"] == "accept-new"
    assert options["userknownhostsfile"] == str(cli.config_dir / "known_hosts")
    assert not (cli.config_dir / "known_hosts").exists()


HOSTILE_CA_LINES = [
    # A second line: any host, any key.
    f"{SOME_KEY}\n@cert-authority * ssh-ed25519 AAAA",
    # An extra token after the key.
    f"{SOME_KEY} * extra",
    # Options before the key.
    f'cert-authority,principals="*" {SOME_KEY}',
]


@pytest.mark.parametrize("hostile", HOSTILE_CA_LINES)
def test_a_hostile_host_ca_line_from_the_portal_is_refused_and_nothing_written(cli: Cli, hostile: str) -> None:
    active_grant(cli, "record")
    host_ca_public_keys()
    CaKey.objects.create(
        purpose="host",
        key_type="ed25519",
        state="trusted",
        public_key=hostile,
        fingerprint="SHA256:hostile",
        private_key_encrypted=b"",
    )
    result = cli.run("ssh-config")
    assert result.returncode == 1, result.stderr
    assert "host CA key that is not one OpenSSH public key" in result.stderr
    assert "\n@cert-authority *" not in result.stderr  # shown escaped, on one line
    assert not (cli.config_dir / "known_hosts").exists()
    assert not (cli.config_dir / "ssh_config").exists()


def _blob_line(key_type: str, blob_type: bytes, body: bytes = b"\x00\x00\x00\x20" + b"k" * 32) -> str:
    blob = len(blob_type).to_bytes(4, "big") + blob_type + body
    return f"{key_type} {base64.b64encode(blob).decode()}"


def test_host_ca_lines_are_exactly_a_key_type_and_its_blob() -> None:
    ed_line = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    rsa_line = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    assert host_ca_line(ed_line) == ed_line
    assert host_ca_line(rsa_line) == rsa_line
    # rsa-sha2-* names the signature; the line written names the key type its blob holds.
    assert host_ca_line("rsa-sha2-512 " + rsa_line.split()[1]) == rsa_line
    for bad in [
        *HOSTILE_CA_LINES,
        ed_line + "\n",
        ed_line + " comment",
        " " + ed_line,
        ed_line.replace(" ", "\t"),
        "ssh-rsa " + ed_line.split()[1],  # the blob is another key type
        _blob_line("ssh-ed25519", b"ssh-ed25519\n"),
        "ssh-dss " + ed_line.split()[1],
        "ssh-ed25519 not!base64" + "A" * 30,
        "ssh-ed25519 " + ed_line.split()[1][:-1] + "$",
        "",
        None,
        ["ssh-ed25519", ed_line.split()[1]],
    ]:
        with pytest.raises(CliError):
            host_ca_line(bad)


def test_the_session_mode_and_the_host_ca_list_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert session_mode({"sessions": "record"}) == "record"
    assert session_mode({}) == "direct"  # a portal from before recorded sessions
    for mode in ("recorded", "record\n", None, 1):
        with pytest.raises(CliError, match="session mode"):
            session_mode({"sessions": mode})
    listings: list[object] = [None, [], "ssh-ed25519 AAAA", {"a": 1}]
    for listed in listings:
        with pytest.raises(CliError):
            host_ca_lines({"host_certificate_authorities": listed})
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path))
    with pytest.raises(CliError, match="not an instance id"):
        pin_host_cas([SOME_KEY], ["i-*"])
    assert not (tmp_path / "known_hosts").exists()


# --- real OpenSSH against a real sshd showing a host certificate ------------------------------


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[LocalHosts]:
    reason = sshd_available()
    if reason is not None:
        pytest.skip(f"no real sshd here: {reason}")
    local = LocalHosts(tmp_path / "hosts")
    try:
        yield local
    finally:
        local.close()


def _sshd(hosts: LocalHosts, grant: Grant, name: str, certify_for: str | None) -> LoopbackSshd:
    """An sshd for the grant's user; its host key certified by the host CA for ``certify_for`` (None: none)."""
    daemon = LoopbackSshd(hosts, grant.instance.instance_id, name=name)
    # It stands where the person's ssh logs in (the recording proxy, on a recorded account): it takes
    # the principal the person's certificate names there (proxy-grant-<uid>), as the proxy does.
    lines = ca_authorized_keys_lines(principal=grant_principal(grant.uid))
    principal = certificate_principal(grant, upstream=False)
    daemon.add_user(
        grant.username, authorized_keys=[line.replace(grant_principal(grant.uid), principal) for line in lines]
    )
    daemon.directory.mkdir(parents=True, exist_ok=True)
    host_key = daemon.directory / "ssh_host_ed25519_key"
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    extra = ""
    if certify_for is not None:
        certificate = daemon.directory / "ssh_host_ed25519_key-cert.pub"
        line = host_certificate_issue(
            public_key=Path(f"{host_key}.pub").read_text(), principals=[certify_for], valid_seconds=600, key_id="t"
        )
        certificate.write_text(line + "\n")
        extra = f"HostCertificate {certificate}\n"
    daemon.start(config_extra=extra)
    return daemon


def _login(cli: Cli, daemon: LoopbackSshd, grant: Grant) -> subprocess.CompletedProcess[str]:
    written = cli.run("ssh-config", "--proxy-command", f"socat - TCP:127.0.0.1:{daemon.port}", check=True)
    config = written.stdout.strip()
    return subprocess.run(
        ["ssh", "-F", config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "web-1", "whoami"],
        env=cli.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_openssh_trusts_only_a_host_certificate_for_the_instance_from_the_pinned_ca(
    cli: Cli, hosts: LocalHosts
) -> None:
    grant = active_grant(cli, "record")
    instance_id = grant.instance.instance_id
    known_hosts = cli.config_dir / "known_hosts"

    good = _sshd(hosts, grant, "good", certify_for=instance_id)
    try:
        login = _login(cli, good, grant)
        assert login.returncode == 0, login.stderr
        assert login.stdout.strip() == grant.username
    finally:
        good.stop()
    pinned = known_hosts.read_text()

    # A certificate for another instance, and a plain host key: refused, and nothing learned.
    for name, certify_for in (("other", "i-0123456789abcdef0"), ("plain", None)):
        daemon = _sshd(hosts, grant, name, certify_for=certify_for)
        try:
            refused = _login(cli, daemon, grant)
        finally:
            daemon.stop()
        assert refused.returncode == 255, refused.stdout
        assert "Host key verification failed" in refused.stderr, refused.stderr
        assert known_hosts.read_text() == pinned
