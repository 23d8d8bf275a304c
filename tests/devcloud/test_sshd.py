"""Every local host has its own real OpenSSH sshd, reached directly or through StartSession."""

from __future__ import annotations

import asyncio
import os
import signal
import socketserver
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devcloud.server import DevCloud
from ssmchannel import DataChannel
from ssmchannel.bridge import channel_socket
from tests.devcloud.helpers import Aws, run
from tests.sshd import openssh_run, sshd_available

pytestmark = pytest.mark.skipif(sshd_available() is not None, reason=f"no real sshd here: {sshd_available()}")


@dataclass(frozen=True)
class Hosts:
    a: str
    b: str
    a_name: str
    key: Path  # a plain key pair, the public half in both users' authorized_keys on A
    user: str  # on A only, with an /etc/sudoers.d entry
    plain_user: str  # on A only, without


def _add_user(ssm: Any, host: str, user: str, public_key: str, *, sudo: bool) -> None:
    commands = [
        f"useradd --create-home --shell /bin/bash {user}",
        f"install -d -m 700 -o {user} -g {user} /home/{user}/.ssh",
        f"echo '{public_key}' > /home/{user}/.ssh/authorized_keys",
        f"chown {user}:{user} /home/{user}/.ssh/authorized_keys",
        f"chmod 600 /home/{user}/.ssh/authorized_keys",
    ]
    if sudo:
        commands += [
            f"echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{user}",
            f"chmod 440 /etc/sudoers.d/{user}",
        ]
    invocation = run(ssm, host, *commands)
    assert invocation["Status"] == "Success", invocation["StandardErrorContent"]


@pytest.fixture(scope="module")
def hosts(aws: Aws, tmp_path_factory: pytest.TempPathFactory) -> Hosts:
    ssm = aws.client("ssm")
    a_name = f"ssh-a-{uuid.uuid4().hex[:6]}"
    a, b = aws.launch_local(a_name), aws.launch_local("ssh-b")
    key = tmp_path_factory.mktemp("ssh-keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public_key = key.with_name("id_ed25519.pub").read_text().strip()
    suffix = uuid.uuid4().hex[:6]
    hosts = Hosts(a=a, b=b, a_name=a_name, key=key, user=f"rs-sudo{suffix}", plain_user=f"rs-plain{suffix}")
    _add_user(ssm, a, hosts.user, public_key, sudo=True)
    _add_user(ssm, a, hosts.plain_user, public_key, sudo=False)
    return hosts


def _keyscan(port: int) -> list[str]:
    scanned = subprocess.run(
        ["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", str(port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    return [line.split(" ", 1)[1] for line in scanned.stdout.splitlines() if line and not line.startswith("#")]


def test_each_host_has_an_sshd_with_its_own_host_key(cloud: DevCloud, hosts: Hosts) -> None:
    port_a, port_b = cloud.runtime.hosts.sshd_port(hosts.a), cloud.runtime.hosts.sshd_port(hosts.b)

    keys_a, keys_b = _keyscan(port_a), _keyscan(port_b)

    assert port_a != port_b
    assert cloud.runtime.hosts.sshd_port(hosts.a) == port_a  # one sshd per host, kept running
    assert len(keys_a) == 1 and keys_a[0].startswith("ssh-ed25519 ")
    assert len(keys_b) == 1 and keys_a != keys_b
    machine_key = Path("/etc/ssh/ssh_host_ed25519_key.pub")
    if machine_key.exists():  # a local host is another machine: never this one's identity
        assert machine_key.read_text().split()[1] != keys_a[0].split()[1]
    config = (cloud.runtime.hosts.host_dir(hosts.a) / "etc" / "ssh" / "sshd_config").read_text()
    assert f"Port {port_a}\n" in config and "PermitRootLogin no\n" in config


def test_a_user_made_by_run_command_logs_in_on_that_host_only(cloud: DevCloud, hosts: Hosts) -> None:
    on_a = openssh_run(
        port=cloud.runtime.hosts.sshd_port(hosts.a),
        username=hosts.plain_user,
        identity_file=hosts.key,
        command="whoami; hostname",
    )
    on_b = openssh_run(port=cloud.runtime.hosts.sshd_port(hosts.b), username=hosts.plain_user, identity_file=hosts.key)

    assert on_a.ok, on_a.stderr
    assert on_a.stdout == f"{hosts.plain_user}\n{hosts.a_name}\n"
    assert not on_b.ok
    assert "Permission denied" in on_b.stderr


@pytest.mark.parametrize(("user_field", "allowed"), [("user", True), ("plain_user", False)])
def test_sudo_works_only_with_a_sudoers_entry(cloud: DevCloud, hosts: Hosts, user_field: str, allowed: bool) -> None:
    result = openssh_run(
        port=cloud.runtime.hosts.sshd_port(hosts.a),
        username=getattr(hosts, user_field),
        identity_file=hosts.key,
        command="sudo -n id -un",
    )

    assert result.ok == allowed, result.stderr
    if allowed:
        assert result.stdout == "root\n"
    else:
        assert "password is required" in result.stderr


def test_sshd_comes_back_on_its_port_after_it_died(cloud: DevCloud, hosts: Hosts) -> None:
    daemon = cloud.runtime.hosts.sshd(hosts.b)
    port, process = daemon.port, daemon.process
    assert port is not None and process is not None
    os.killpg(process.pid, signal.SIGKILL)

    deadline = time.monotonic() + 10
    while daemon.process is process or not daemon.running:  # the watcher starts it again
        assert time.monotonic() < deadline, "sshd was not started again"
        time.sleep(0.05)
    assert cloud.runtime.hosts.sshd_port(hosts.b) == port  # waits while the watcher starts it
    assert _keyscan(port)


# --- through the Session Manager data channel ----------------------------------------------


def _start(aws: Aws, target: str, document: str, **parameters: list[str]) -> dict[str, Any]:
    return dict(aws.client("ssm").start_session(Target=target, DocumentName=document, Parameters=parameters))


def _wait_until_ended(aws: Aws, session_id: str, timeout: float = 10) -> None:
    ssm = aws.client("ssm")
    deadline = time.monotonic() + timeout
    while any(s["SessionId"] == session_id for s in ssm.describe_sessions(State="Active")["Sessions"]):
        assert time.monotonic() < deadline, f"{session_id} is still active"
        time.sleep(0.05)


def test_an_ssh_session_reaches_the_hosts_sshd(aws: Aws, hosts: Hosts) -> None:
    started = _start(aws, hosts.a, "AWS-StartSSHSession", portNumber=["22"])

    async def banner() -> bytes:
        async with DataChannel.open(started["StreamUrl"], started["TokenValue"]) as channel:
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = await channel.read(1)
                assert chunk, f"the channel ended after {line!r}"
                line += chunk
            return line

    line = asyncio.run(asyncio.wait_for(banner(), 30))

    assert line.startswith(b"SSH-2.0-OpenSSH")
    _wait_until_ended(aws, started["SessionId"])  # the client terminated it on close


def test_an_ssh_login_through_the_channel_lands_on_the_host(aws: Aws, hosts: Hosts) -> None:
    """The portal's terminal path: StartSession, the data channel, then SSH over it."""
    import asyncssh

    started = _start(aws, hosts.a, "AWS-StartSSHSession", portNumber=["22"])

    async def login() -> str:
        async with (
            DataChannel.open(started["StreamUrl"], started["TokenValue"]) as channel,
            channel_socket(channel) as sock,
            asyncssh.connect(
                "127.0.0.1",
                sock=sock,
                username=hosts.user,
                client_keys=[str(hosts.key)],
                known_hosts=None,
                agent_path=None,
                config=None,
            ) as connection,
        ):
            result = await connection.run("whoami; hostname", check=True)
            return str(result.stdout)

    assert asyncio.run(asyncio.wait_for(login(), 30)) == f"{hosts.user}\n{hosts.a_name}\n"


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_port_forwarding_reaches_a_port_of_this_machine(aws: Aws, hosts: Hosts, echo_port: int) -> None:
    started = _start(aws, hosts.b, "AWS-StartPortForwardingSession", portNumber=[str(echo_port)], localPortNumber=["0"])

    async def echo() -> tuple[bytes, Any]:
        async with DataChannel.open(started["StreamUrl"], started["TokenValue"]) as channel:
            await channel.write(b"ping through the tunnel")
            return await channel.readexactly(23), channel.session_properties

    data, properties = asyncio.run(asyncio.wait_for(echo(), 30))

    assert data == b"ping through the tunnel"
    assert properties["type"] == "LocalPortForwarding"


def test_an_ssh_session_to_an_instance_without_sshd_ends_with_the_reason(aws: Aws) -> None:
    started = _start(aws, aws.launch("not-local"), "AWS-StartSSHSession", portNumber=["22"])

    async def attempt() -> tuple[bytes, str | None]:
        async with DataChannel.open(started["StreamUrl"], started["TokenValue"]) as channel:
            return await channel.read(), channel.channel_closed.output if channel.channel_closed else None

    data, output = asyncio.run(asyncio.wait_for(attempt(), 30))

    assert data == b""
    assert output is not None and "Unable to connect" in output
    _wait_until_ended(aws, started["SessionId"])
