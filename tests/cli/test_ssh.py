"""`passport ssh-config` / `connect` / `proxy` end to end: the real stack (devcloud, a Celery worker),
a request approved and provisioned, then OpenSSH logs in with the CLI's own key and the portal's
certificate, through a Session Manager data channel to the devcloud host's sshd."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import socketserver
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from moto.ssm.models import ssm_backends

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import AccessRequest
from terminal.models import TerminalSession
from tests.cli.conftest import CLI_TEST_SESSIONS, Cli, active_request_from_cli, stop_cli
from tests.sshd import sshd_available, stop_ssh
from tests.stack import Cloud, open_forward_ports, wait_for

# ssh goes through `passport proxy`, which opens the portal's WebSocket first: the ASGI portal.
CLI_PORTAL = "asgi"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def _ssh(cli: Cli, config: str, host: str, command: str = "whoami") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", host, command],
        env=cli.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_ssh_config_and_connect_through_the_data_channel(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    web_id = aws.instance_id("web-1")
    access_request = active_request_from_cli(cli, prod, web_id, "cli ssh test")
    username = access_request.grants.get().username

    # Ed25519 (the default): one certificate; the private key stays in the config dir, 0600. On a direct
    # account the RSA key's two certificates follow it, for hosts that take no Ed25519 (test_rsa_fallback.py).
    written = cli.json("ssh-config")
    config = written["path"]
    assert written["hosts"] == [
        {"host": web_id, "name": "web-1", "aliases": [web_id, "web-1"], "user": username, "request": access_request.pk}
    ]
    text = Path(config).read_text()
    assert f"Host {web_id} web-1" in text and f"User {username}" in text
    assert "ProxyCommand" in text and f"proxy {access_request.pk} {web_id}" in text
    assert text.count("CertificateFile") == (1 if CLI_TEST_SESSIONS == "record" else 3) and "IdentityFile" in text
    key = cli.config_dir / "keys" / "id_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for host in (web_id, "web-1"):
        login = _ssh(cli, config, host)
        assert login.returncode == 0, login.stderr
        assert login.stdout.strip() == username

    # RSA: SHA-2 first, then SHA-1, in CertificateFile order.
    rsa_config = cli.run("ssh-config", "--key-type", "rsa", "-o", str(cli.config_dir / "rsa_config"), check=True)
    rsa_path = rsa_config.stdout.strip()
    # The v1 notes' spelling, --keyType, is the same flag.
    camel = cli.run("ssh-config", "--keyType", "rsa", "-o", str(cli.config_dir / "rsa_config_v1"), check=True)

    def settings(path: str) -> list[str]:  # the comment says when it was written
        return [line for line in Path(path).read_text().splitlines() if not line.startswith("#")]

    assert settings(camel.stdout.strip()) == settings(rsa_path)
    certificate_files = [
        line.split(None, 1)[1].strip('"')  # quoted: a path may hold spaces
        for line in Path(rsa_path).read_text().splitlines()
        if "CertificateFile" in line
    ]
    assert len(certificate_files) == 2
    assert (
        "rsa-sha2-512"
        in subprocess.run(
            ["ssh-keygen", "-L", "-f", certificate_files[0]], capture_output=True, text=True, check=True
        ).stdout
    )
    rsa_login = _ssh(cli, rsa_path, web_id)
    assert rsa_login.returncode == 0, rsa_login.stderr
    assert rsa_login.stdout.strip() == username

    # scp both ways through the same config.
    upload = cli.config_dir / "data.csv"
    upload.write_text("id,value\n1,passport\n")
    sent = subprocess.run(
        ["scp", "-F", config, "-o", "BatchMode=yes", str(upload), f"{web_id}:data.csv"],
        env=cli.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert _ssh(cli, config, web_id, "cat data.csv").stdout == upload.read_text()
    fetched = cli.config_dir / "back.csv"
    got = subprocess.run(
        ["scp", "-F", config, "-o", "BatchMode=yes", f"{web_id}:data.csv", str(fetched)],
        env=cli.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert fetched.read_text() == upload.read_text()
    if CLI_TEST_SESSIONS == "record":
        # Through the portal's recording proxy: both copies are in the Logbook with their digest.
        # Each entry is written as the proxy sees its transfer end, which may be after scp exits.
        digest = hashlib.sha256(upload.read_bytes()).hexdigest()

        def moved() -> list[tuple[str, str, bool]]:
            return [
                (entry.detail["direction"], entry.detail["sha256"], entry.detail["complete"])
                for entry in LogbookEntry.objects.filter(action="file.transferred", request_id=access_request.pk)
                if entry.detail["path"].endswith("data.csv")
            ]

        wait_for(lambda: len(moved()) >= 2, timeout=30, what="both copies in the Logbook")
        assert sorted(moved()) == [("download", digest, True), ("upload", digest, True)], moved()
        assert TerminalSession.objects.filter(client="cli", grant__request=access_request).exists()

    # ssh -L: a service only the instance can reach (here a TCP echo server on its loopback).
    with _EchoServer() as service:
        # Recorded sessions relay ssh -L only to the ports the account opens (22, 3389 and its extra ones).
        # sshd too holds the ports, in the grant's authorized_keys lines (permitopen).
        open_forward_ports(prod, [service.port])
        local_port = _free_port()
        forward = subprocess.Popen(
            ["ssh", "-F", config, "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-N",
             "-L", f"127.0.0.1:{local_port}:127.0.0.1:{service.port}", web_id],
            env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            echoed = wait_for(lambda: _echo_through(local_port, b"through the tunnel"), timeout=60, what="ssh -L")
            assert echoed == b"through the tunnel"
        finally:
            stop_ssh(forward)

    # connect: the only ready instance is picked without asking; the command runs there.
    connected = cli.run("connect", "--", "whoami")
    assert connected.returncode == 0, connected.stderr
    assert connected.stdout.strip() == username
    unknown = cli.run("connect", "i-doesnotexist")
    assert unknown.returncode == 4 and web_id not in unknown.stdout

    listed = json.loads(cli.run("requests", "list", "--json", "--status", "active", check=True).stdout)
    assert [item["id"] for item in listed] == [access_request.pk]
    done = cli.json("requests", "complete", str(access_request.pk))
    assert done["status"] in {"completing", "completed"}


class _EchoServer:
    """Stands in for Remote Desktop: devcloud forwards a port-forwarding session to 127.0.0.1:<port>."""

    def __init__(self) -> None:
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


def test_windows_connect_forwards_a_local_port_and_shows_the_password(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    access_request = active_request_from_cli(cli, prod, aws.instance_id("win-ad-1"), "rdp test")
    username = access_request.grants.get().username

    with _EchoServer() as rdp:
        # The stand-in listens on a free port, which the account must open like any port but 22 and 3389.
        AwsAccount.objects.filter(pk=prod.pk).update(extra_forward_ports=[rdp.port])
        process = subprocess.Popen(
            [sys.executable, "-m", "passport_cli", "connect", "win-ad-1", "--remote-port", str(rdp.port)],
            env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            header = process.stdout.readline().strip()
            assert header == "Windows Login Credentials:", (header, process.stderr.read() if process.poll() else "")
            host = process.stdout.readline().strip()
            user = process.stdout.readline().strip()
            password = process.stdout.readline().strip()
            assert host.startswith("Host: 127.0.0.1:"), (host, process.stderr.read() if process.poll() else "")
            assert user == f"Username: {username}"
            assert password.startswith("Password: ") and len(password) > len("Password: ") + 8
            _assert_handed_over_only_in_parameter_store(aws, prod, access_request, password.removeprefix("Password: "))
            port = int(host.rsplit(":", 1)[1])
            for attempt in (b"first connection", b"second connection"):  # one stream each, one session
                with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                    conn.sendall(attempt)
                    received = b""
                    while len(received) < len(attempt):
                        chunk = conn.recv(4096)
                        assert chunk, "the forwarded connection closed early"
                        received += chunk
                    assert received == attempt
        finally:
            stop_cli(process)
    stderr = process.stderr.read() if process.stderr else ""
    assert process.returncode == 143, stderr
    assert "passport: terminated" in stderr and "Traceback" not in stderr, stderr


def _assert_handed_over_only_in_parameter_store(
    aws: Cloud, prod: AwsAccount, access_request: AccessRequest, password: str
) -> None:
    """The instance read the password from a SecureString parameter; Run Command never carried it."""
    grant = access_request.grants.select_related("instance").get()
    runtime = aws.devcloud.runtime.commands
    read = runtime.parameters_read(
        prod.account_id, grant.instance.region, grant.command_ids[-1], grant.instance.instance_id
    )
    assert read == {f"/passport/handoff/{grant.uid}": password}
    history = json.dumps(runtime.commands(prod.account_id, grant.instance.region), default=str)
    assert password not in history and base64.b64encode(password.encode()).decode() not in history
    # Deleted from the account's Parameter Store once the script ran.
    assert ssm_backends[prod.account_id][grant.instance.region].get_parameter(f"/passport/handoff/{grant.uid}") is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _echo_through(port: int, payload: bytes) -> bytes | None:
    """Send ``payload`` to a local port and read it back; None while nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(payload)
            received = b""
            while len(received) < len(payload):
                chunk = connection.recv(4096)
                if not chunk:
                    return None
                received += chunk
            return received
    except OSError:
        return None
