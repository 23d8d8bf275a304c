"""What the recording proxy refuses, with the real OpenSSH client through `passport proxy`: a
certificate of another request or grant, agent forwarding, remote forwarding, ports the account
does not open. And ``ssh -L`` to an allowed port, written down when it closes."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from core.usernames import proxy_principal
from sshca.services import certificate_issue, certificate_key_id
from tests.sshd import sshd_available, stop_ssh
from tests.stack import Cloud, free_port, open_forward_ports, wait_for
from tests.terminal.proxy.conftest import Proxied, active_request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def host_options(config: str, *, drop: tuple[str, ...] = ()) -> list[str]:
    """The first Host block of an ssh config written by `passport ssh-config`, as -o options."""
    options, inside = [], False
    for line in Path(config).read_text().splitlines():
        if line.startswith("Host "):
            if inside:
                break
            inside = True
            continue
        if inside and line.strip():
            keyword, value = line.strip().split(" ", 1)
            if keyword not in drop and keyword != "HostName":
                options.append(f"-o{keyword}={value}")
    return options


def refusals(request_id: int, what: str) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action="proxy.refused", request_id=request_id, detail__what=what))


def refused_because(request_id: int, reason: str) -> bool:
    return any(reason in entry.detail["reason"] for entry in refusals(request_id, "certificate"))


def _ssh_with_certificate(proxied: Proxied, tmp_path: Path, *, request_id: int, key_id: str) -> int:
    """ssh through the proxy with the CLI's key and a certificate signed by the real user CA for this
    grant's principal, recorded as issued for ``request_id`` with ``key_id``; returns ssh's exit status."""
    key = tmp_path / f"key-{request_id}-{abs(hash(key_id))}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    grant = proxied.grant
    assert proxied.access_request.expires_at is not None
    line = certificate_issue(
        public_key=Path(f"{key}.pub").read_text().strip(),
        principal=proxy_principal(grant.uid),
        valid_before=proxied.access_request.expires_at,
        key_id=key_id,
        request_id=request_id,
    )
    Path(f"{key}-cert.pub").write_text(line + "\n")
    options = host_options(proxied.config, drop=("IdentityFile", "CertificateFile", "Host"))
    result = subprocess.run(
        ["ssh", "-F", "/dev/null", *options, f"-oIdentityFile={key}", f"-oCertificateFile={key}-cert.pub",
         "-oBatchMode=yes", grant.instance.instance_id, "true"],
        env=proxied.cli.env, capture_output=True, timeout=90, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return result.returncode


def test_a_certificate_of_another_request_or_grant_is_refused(
    proxied: Proxied, prod: AwsAccount, tmp_path: Path
) -> None:
    grant = proxied.grant
    other = active_request(prod, proxied.alice, proxied.approver, ["db-1"])
    own_key_id = certificate_key_id(
        grant_uid=grant.uid, request_id=grant.request_id, instance_id=grant.instance.instance_id, person=proxied.alice
    )
    # Signed by the real CA for this grant's principal, but recorded for another request: refused.
    assert _ssh_with_certificate(proxied, tmp_path, request_id=other.pk, key_id=own_key_id) == 255
    # The proxy writes the refusal as it drops the connection: ssh may be gone a moment before it is saved.
    wait_for(lambda: refused_because(grant.request_id, "not issued for this request"), what="refusal: request")
    # This request, but a key id that names another grant: refused.
    other_grant = other.grants.get()
    foreign_key_id = certificate_key_id(
        grant_uid=other_grant.uid, request_id=grant.request_id, instance_id="i-x", person=proxied.alice
    )
    assert _ssh_with_certificate(proxied, tmp_path, request_id=grant.request_id, key_id=foreign_key_id) == 255
    wait_for(lambda: refused_because(grant.request_id, "another grant"), what="refusal: another grant")
    # The same, issued as Passport issues it for this grant: accepted (the checks above are what refused).
    assert _ssh_with_certificate(proxied, tmp_path, request_id=grant.request_id, key_id=own_key_id) == 0
    # The other grant's own certificate (from its ssh config) against this grant's proxy: refused too.
    other_config = proxied.cli.json("ssh-config", "-o", str(tmp_path / "both"))["path"]
    blocks = Path(other_config).read_text()
    other_cert = next(
        line.split(None, 1)[1].strip('"')
        for line in blocks.splitlines()
        if "CertificateFile" in line and f"{other.pk}-" in line
    )
    options = host_options(proxied.config, drop=("CertificateFile", "Host"))
    result = subprocess.run(
        ["ssh", "-F", "/dev/null", *options, f"-oCertificateFile={other_cert}", "-oBatchMode=yes",
         grant.instance.instance_id, "true"],
        env=proxied.cli.env, capture_output=True, timeout=90, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 255, result.stderr


def test_agent_and_remote_forwarding_are_refused(proxied: Proxied, tmp_path: Path) -> None:
    agent_socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL)
    try:
        wait_for(agent_socket.exists, timeout=10, what="ssh-agent")
        env = {**proxied.cli.env, "SSH_AUTH_SOCK": str(agent_socket)}
        result = subprocess.run(
            ["ssh", "-F", proxied.config, "-A", "-oBatchMode=yes", "web-1", 'echo "[${SSH_AUTH_SOCK:-none}]"'],
            env=env, capture_output=True, timeout=90, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"[none]"
    wait_for(lambda: refusals(proxied.access_request.pk, "agent forwarding"), what="agent forwarding refused")

    x11 = subprocess.run(
        ["ssh", "-F", proxied.config, "-oForwardX11=yes", "-oBatchMode=yes", "web-1", 'echo "[${DISPLAY:-none}]"'],
        env={**proxied.cli.env, "DISPLAY": "127.0.0.1:42"}, capture_output=True, timeout=90, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert x11.returncode == 0 and x11.stdout.strip() == b"[none]", x11.stderr
    wait_for(lambda: refusals(proxied.access_request.pk, "x11 forwarding"), what="X11 forwarding refused")

    remote = proxied.ssh("-oExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9", "true")
    assert remote.returncode == 255, remote.stderr
    assert b"remote port forwarding failed" in remote.stderr.lower() or b"forwarding" in remote.stderr.lower()
    wait_for(lambda: refusals(proxied.access_request.pk, "remote forward"), what="remote forwarding refused")


def _read_some(port: int, deadline: float) -> bytes:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.settimeout(20)
                with contextlib.suppress(TimeoutError, ConnectionError):
                    return conn.recv(64)
                return b""
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_local_forwarding_to_allowed_ports_only(proxied: Proxied, prod: AwsAccount, aws: Cloud) -> None:
    instance_id = proxied.grant.instance.instance_id
    sshd_port = aws.devcloud.runtime.hosts.sshd_port(instance_id)
    open_forward_ports(prod, [sshd_port])
    allowed, refused, elsewhere = free_port(), free_port(), free_port()
    # Any other name, on a port the account opens: the instance's sshd would dial whatever it
    # names (another instance, a database in the VPC). Here the machine's own name, which the
    # sshd reaches; anything but the instance's loopback names is refused before it is dialled.
    other_host = socket.gethostname()
    assert other_host not in ("localhost", "127.0.0.1", "::1")
    forward = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-N", "-L", f"{allowed}:127.0.0.1:{sshd_port}",
         "-L", f"{refused}:127.0.0.1:5999", "-L", f"{elsewhere}:{other_host}:{sshd_port}", "web-1"],
        env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        assert _read_some(allowed, deadline).startswith(b"SSH-2.0-")
        assert _read_some(refused, deadline) == b""
        assert _read_some(elsewhere, deadline) == b""
        closed = wait_for(
            lambda: LogbookEntry.objects.filter(action="forward.closed", request_id=proxied.access_request.pk).first(),
            what="forward.closed",
        )
    finally:
        stop_ssh(forward)
    assert closed.detail["target"] == f"127.0.0.1:{sshd_port}" and closed.detail["client"] == "cli"
    assert closed.detail["bytes_from_instance"] >= len(b"SSH-2.0-") and closed.detail["duration_seconds"] >= 0
    refused_entries = wait_for(
        lambda: found if len(found := refusals(proxied.access_request.pk, "port forward")) >= 2 else None,
        what="port and host refused",
    )
    by_reason = {entry.detail["reason"]: entry.detail for entry in refused_entries}
    assert by_reason["port 5999 is not open on this account"]["port"] == 5999
    assert sshd_port in by_reason["port 5999 is not open on this account"]["allowed"]
    assert by_reason["only the instance itself can be reached"]["host"] == other_host


def _option(config: str, keyword: str) -> str:
    block = host_options(config)
    return next(option.split("=", 1)[1].strip('"') for option in block if option.startswith(f"-o{keyword}="))


def test_no_tunnel_carries_an_unrecorded_ssh_session(proxied: Proxied, prod: AwsAccount, aws: Cloud) -> None:
    """The person's certificate is for the proxy alone, and no tunnel reaches the instance's sshd on 22.

    Through an ``ssh -L`` to sshd, the key and certificate `passport ssh-config` wrote would
    otherwise log in past the proxy: a shell nobody records. devcloud's sshd listens on a port of
    its own, opened here as 22 is on every account, to show that the certificate itself is refused.
    """
    sshd_port = aws.devcloud.runtime.hosts.sshd_port(proxied.grant.instance.instance_id)
    open_forward_ports(prod, [sshd_port])
    tunnel, to_22 = free_port(), free_port()
    forward = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-N", "-L", f"{tunnel}:127.0.0.1:{sshd_port}",
         "-L", f"{to_22}:localhost:22", "web-1"],
        env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        assert _read_some(tunnel, deadline).startswith(b"SSH-2.0-")  # the tunnel reaches sshd...
        nested = subprocess.run(
            ["ssh", "-F", "/dev/null", "-p", str(tunnel), "-i", _option(proxied.config, "IdentityFile"),
             f"-oCertificateFile={_option(proxied.config, 'CertificateFile')}", "-oIdentitiesOnly=yes",
             "-oStrictHostKeyChecking=no", "-oUserKnownHostsFile=/dev/null", "-oBatchMode=yes",
             f"{proxied.grant.username}@127.0.0.1", "echo UNRECORDED-$((6*7))"],
            env=proxied.cli.env, capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert _read_some(to_22, deadline) == b""  # ...never on 22
    finally:
        stop_ssh(forward)
    # ...but sshd takes no certificate of the person's: it names the proxy's principal, not the grant's.
    assert nested.returncode == 255 and b"UNRECORDED-42" not in nested.stdout
    assert b"Permission denied" in nested.stderr, nested.stderr
    refused = wait_for(lambda: refusals(proxied.access_request.pk, "port forward"), what="the tunnel to 22 refused")
    assert refused[0].detail["port"] == 22
    assert refused[0].detail["reason"] == "a tunnel to the instance's sshd would not be recorded"


def test_another_login_name_is_refused(proxied: Proxied) -> None:
    result = proxied.ssh("-l", "root", "true")
    assert result.returncode == 255
    refused = wait_for(lambda: refusals(proxied.access_request.pk, "login"), what="login refused")
    assert refused[0].detail["username"] == "root"
