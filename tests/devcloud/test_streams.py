"""devcloud's data-channel server (the agent's side) with the real client over real WebSockets."""

from __future__ import annotations

import asyncio
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devcloud.server import DevCloud
from devcloud.sessions import SessionRegistry
from devcloud.streams import Faults, StreamServer, StreamTarget, registry_resolver
from devcloud.streams.target import vpc_reserved_addresses
from ssmchannel import ChannelClosedError, DataChannel, Flag
from tests.devcloud.helpers import Aws
from tests.ssmchannel.aio import async_test


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _SayByeAndHangUp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"bye\n")


class _Recorder(socketserver.BaseRequestHandler):
    """Keeps what it receives and notes when the agent closes the connection."""

    received: bytearray
    closed: threading.Event

    def handle(self) -> None:
        while data := self.request.recv(65536):
            type(self).received += data
        type(self).closed.set()


def _serve(handler: type[socketserver.BaseRequestHandler]) -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def echo_port() -> Iterator[int]:
    yield from _serve(_Echo)


@pytest.fixture
def streams() -> Iterator[Callable[..., tuple[StreamServer, str]]]:
    """Start StreamServers serving the given targets by session id; all stopped afterwards."""
    started: list[StreamServer] = []

    def start(targets: dict[str, StreamTarget], **options: Any) -> tuple[StreamServer, str]:
        server = StreamServer(resolve_session=targets.get, **options)
        started.append(server)
        return server, server.start()

    yield start
    for server in started:
        server.stop()


def url(base: str, session_id: str = "s-1") -> str:
    return f"{base}/v1/data-channel/{session_id}"


def test_one_megabyte_echoes_byte_exact_through_faults(streams: Any, echo_port: int) -> None:
    faults = Faults(loss=0.05, duplication=0.05, reorder_window=6, delay=0.005, incoming_loss=0.05, seed=42)
    server, base = streams({"s-1": StreamTarget(token="tok", port=echo_port)}, faults=faults)
    payload = os.urandom(1024 * 1024)

    async def scenario() -> bytes:
        async with DataChannel.open(url(base), "tok") as channel:
            writer = asyncio.create_task(channel.write(payload))
            received = await channel.readexactly(len(payload))
            await writer
            return received

    received = asyncio.run(asyncio.wait_for(scenario(), 120))
    server.stop()  # sums the per-session fault statistics

    assert received == payload
    for fault in ("dropped", "duplicated", "reordered", "delayed", "incoming_dropped"):
        assert server.stats[fault] > 0, fault


@async_test
async def test_handshake_describes_an_ssh_session(streams: Any, echo_port: int) -> None:
    _, base = streams({"s-1": StreamTarget(token="tok", port=echo_port, agent_version="3.2.582.0")})
    async with DataChannel.open(url(base), "tok") as channel:
        assert (channel.session_type, channel.session_properties) == ("Port", {"portNumber": str(echo_port)})
        assert channel.agent_version == "3.2.582.0"


@async_test
async def test_port_forwarding_is_announced_as_such(streams: Any, echo_port: int) -> None:
    target = StreamTarget(token="tok", port=echo_port, document_name="AWS-StartPortForwardingSession")
    _, base = streams({"s-1": target})
    async with DataChannel.open(url(base), "tok") as channel:
        assert channel.session_properties == {"portNumber": str(echo_port), "type": "LocalPortForwarding"}
        await channel.write(b"ping")
        assert await channel.readexactly(4) == b"ping"


@pytest.mark.parametrize(
    ("session_id", "token", "reason"),
    [("s-2", "tok", "Session s-2 does not exist"), ("s-1", "stolen", "invalid token")],
)
@async_test
async def test_unknown_session_or_wrong_token_is_refused(
    streams: Any, echo_port: int, session_id: str, token: str, reason: str
) -> None:
    _, base = streams({"s-1": StreamTarget(token="tok", port=echo_port)})
    with pytest.raises(ChannelClosedError, match=reason):
        async with DataChannel.open(url(base, session_id), token):
            pass


@async_test
async def test_other_paths_are_not_found(streams: Any, echo_port: int) -> None:
    _, base = streams({"s-1": StreamTarget(token="tok", port=echo_port)})
    with pytest.raises(ChannelClosedError, match="404"):
        await DataChannel.connect(f"{base}/v1/control-channel/s-1", "tok")


@async_test
async def test_target_hanging_up_sends_channel_closed_after_the_data() -> None:
    ports = _serve(_SayByeAndHangUp)
    port = next(ports)
    server = StreamServer(
        resolve_session={"s-1": StreamTarget(token="tok", port=port)}.get,
        faults=Faults(loss=0.2, reorder_window=3, seed=1),
    )
    base = await asyncio.to_thread(server.start)
    try:
        async with DataChannel.open(url(base), "tok") as channel:
            assert await channel.read(100) == b"bye\n"
            assert await channel.read() == b""
            assert channel.channel_closed is not None
            assert channel.channel_closed.session_id == "s-1"
    finally:
        await asyncio.to_thread(server.stop)
        next(ports, None)


@async_test
async def test_terminate_session_flag_closes_the_target_connection() -> None:
    _Recorder.received, _Recorder.closed = bytearray(), threading.Event()
    ports = _serve(_Recorder)
    ended: list[tuple[str, str]] = []
    server = StreamServer(
        resolve_session={"s-1": StreamTarget(token="tok", port=next(ports))}.get,
        on_session_end=lambda session_id, output: ended.append((session_id, output)),
    )
    base = await asyncio.to_thread(server.start)
    try:
        channel = await DataChannel.connect(url(base), "tok")
        await channel.write(b"last words")
        await channel.close()  # drains, then sends TerminateSession
        assert await asyncio.to_thread(_Recorder.closed.wait, 5)
        assert bytes(_Recorder.received) == b"last words"
    finally:
        await asyncio.to_thread(server.stop)
        next(ports, None)
    assert ended == [("s-1", "")]


@async_test
async def test_disconnect_to_port_reconnects_on_new_data_for_port_forwarding(streams: Any, echo_port: int) -> None:
    target = StreamTarget(token="tok", port=echo_port, document_name="AWS-StartPortForwardingSession")
    _, base = streams({"s-1": target})
    async with DataChannel.open(url(base), "tok") as channel:
        await channel.write(b"first")
        assert await channel.readexactly(5) == b"first"
        await channel.send_flag(Flag.DISCONNECT_TO_PORT)
        await channel.write(b"second")  # a new local connection: the agent dials again
        assert await channel.readexactly(6) == b"second"
        assert channel.closed_reason is None


@async_test
async def test_session_terminated_through_the_api_closes_the_channel(streams: Any, echo_port: int) -> None:
    terminated = threading.Event()
    _, base = streams({"s-1": StreamTarget(token="tok", port=echo_port, terminated=terminated)})
    async with DataChannel.open(url(base), "tok") as channel:
        terminated.set()
        assert await channel.read() == b""
        assert channel.closed_reason == "Session s-1 was terminated."


@async_test
async def test_unreachable_port_ends_the_session_with_the_reason(streams: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]  # bound, never listening: connections are refused
        _, base = streams({"s-1": StreamTarget(token="tok", port=free_port)})
        async with DataChannel.open(url(base), "tok") as channel:
            assert await channel.read() == b""
            assert channel.closed_reason is not None
            assert channel.closed_reason.startswith("Unable to connect to specified port")


@pytest.mark.parametrize(
    ("host", "vpc_cidr_blocks"),
    [
        ("169.254.169.254", ()),  # instance metadata
        ("::ffff:169.254.169.123", ()),  # Time Sync, IPv4-mapped: Go's net.IP.Equal matches it
        ("fd00:ec2::253", ()),  # the Amazon DNS server over IPv6
        ("10.0.0.2", ("10.0.0.0/16",)),  # the VPC's DNS (base + 2)
        ("10.0.255.255", ("10.0.0.0/16",)),  # the VPC's broadcast address
    ],
)
@async_test
async def test_forwarding_to_an_address_the_agent_denies_ends_the_session_before_any_dial(
    streams: Any, host: str, vpc_cidr_blocks: tuple[str, ...]
) -> None:
    """port.go validateParameters: the resolved host against DefaultDeniedPortForwardingRemoteIPs
    and the VPC's reserved addresses, failing the plugin with its message."""
    target = StreamTarget(
        token="tok",
        host=host,
        port=80,
        document_name="AWS-StartPortForwardingSessionToRemoteHost",
        vpc_cidr_blocks=vpc_cidr_blocks,
    )
    _, base = streams({"s-1": target})
    async with DataChannel.open(url(base), "tok") as channel:
        # Nothing written: the agent ends the session right after the handshake, and a write racing
        # that end would fail on the closed channel instead.
        assert await asyncio.wait_for(channel.read(), 10) == b""
        assert channel.closed_reason == f"Forwarding to IP address {host} is forbidden."
        assert channel.session_properties.get("host") == host  # as the agent's handshake names it


@async_test
async def test_forwarding_to_an_allowed_remote_host_is_served(streams: Any, echo_port: int) -> None:
    target = StreamTarget(
        token="tok",
        host="127.0.0.1",
        port=echo_port,
        document_name="AWS-StartPortForwardingSessionToRemoteHost",
        vpc_cidr_blocks=("10.0.0.0/16",),
    )
    _, base = streams({"s-1": target})
    async with DataChannel.open(url(base), "tok") as channel:
        await channel.write(b"ping")
        assert await channel.readexactly(4) == b"ping"


class _Dns:
    """A DNS that answers ``names`` from a list per name (the last answer again once it runs out),
    counting the questions; other hosts go to the real resolver. The agent side resolves in
    getaddrinfo, so this stands in for the instance's DNS (no name here needs the network)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, names: dict[str, list[list[str]]]) -> None:
        self.names = names
        self.asked: dict[str, int] = {}
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in self.names:
            return self._real(host, port, *args, **kwargs)
        asked = self.asked[host] = self.asked.get(host, 0) + 1
        answers = self.names[host]
        addresses = answers[min(asked, len(answers)) - 1]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
            for a in addresses
        ]


def _remote(host: str, port: int) -> StreamTarget:
    return StreamTarget(token="tok", host=host, port=port, document_name="AWS-StartPortForwardingSessionToRemoteHost")


@pytest.mark.parametrize(
    "answers",
    [
        ["169.254.169.254"],  # instance-data's A record on EC2
        ["fd00:ec2::254"],
        ["10.0.12.7", "169.254.169.254"],  # any address it resolves to
    ],
)
@async_test
async def test_a_name_that_resolves_to_an_address_the_agent_denies_is_refused_by_its_name(
    streams: Any, monkeypatch: pytest.MonkeyPatch, answers: list[str]
) -> None:
    """port.go validateParameters resolves the host (net.LookupHost) and checks every address,
    naming the host as given in its message."""
    dns = _Dns(monkeypatch, {"instance-data.ec2.internal": [answers]})
    _, base = streams({"s-1": _remote("instance-data.ec2.internal", 80)})
    async with DataChannel.open(url(base), "tok") as channel:
        assert await asyncio.wait_for(channel.read(), 10) == b""
        assert channel.closed_reason == "Forwarding to IP address instance-data.ec2.internal is forbidden."
    assert dns.asked == {"instance-data.ec2.internal": 1}


@async_test
async def test_the_agent_dials_the_addresses_it_checked_never_the_name_again(
    streams: Any, monkeypatch: pytest.MonkeyPatch, echo_port: int
) -> None:
    """port.go keeps what LookupHost answered (p.addresses) and DialCall dials those: a name whose
    answer changes after the check (DNS rebinding to the metadata service) reaches only what was
    checked. devcloud asked the name again at each dial."""
    dns = _Dns(monkeypatch, {"db.rebinding.test": [["127.0.0.1"], ["169.254.169.254"]]})
    _, base = streams({"s-1": _remote("db.rebinding.test", echo_port)})
    async with DataChannel.open(url(base), "tok") as channel:
        await channel.write(b"ping")
        assert await asyncio.wait_for(channel.readexactly(4), 10) == b"ping"
    assert dns.asked == {"db.rebinding.test": 1}


@async_test
async def test_the_addresses_are_dialled_in_order_until_one_answers(
    streams: Any, monkeypatch: pytest.MonkeyPatch, echo_port: int
) -> None:
    # 127.0.0.2 is this machine too, but the echo server listens on 127.0.0.1 only: refused.
    _Dns(monkeypatch, {"db.two.test": [["127.0.0.2", "127.0.0.1"]]})
    _, base = streams({"s-1": _remote("db.two.test", echo_port)})
    async with DataChannel.open(url(base), "tok") as channel:
        await channel.write(b"ping")
        assert await asyncio.wait_for(channel.readexactly(4), 10) == b"ping"


@pytest.mark.parametrize(
    "host",
    [
        "db.nowhere.test",  # no answer
        # Numbers only inet_aton reads (169.254.169.254): Go's own resolver, which the agent uses, takes
        # them for names, which resolve to nothing; the C library's would have read the metadata address.
        "2852039166",
        "0xa9.0xfe.0xa9.0xfe",
        "169.254.43518",
    ],
)
@async_test
async def test_a_host_that_resolves_to_nothing_is_not_refused_but_its_dial_fails(
    streams: Any, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """port.go: a LookupHost error refuses nothing and leaves no addresses, so DialCall fails with
    "missing address"."""
    _Dns(monkeypatch, {"db.nowhere.test": [[]]})
    _, base = streams({"s-1": _remote(host, 80)})
    async with DataChannel.open(url(base), "tok") as channel:
        assert await asyncio.wait_for(channel.read(), 10) == b""
        assert channel.closed_reason == "Unable to connect to specified port: missing address"


def test_vpc_reserved_addresses_are_the_first_four_and_the_broadcast() -> None:
    # port.go calculateAddress: the block's address as written and the next three (last byte
    # only), and its broadcast address; per block, IPv4 and IPv6.
    assert vpc_reserved_addresses(["10.0.0.0/16", "2600:1f18:abcd:ef00::/56", "not a block"]) == [
        "10.0.0.0",
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.0.255.255",
        "2600:1f18:abcd:ef00::",
        "2600:1f18:abcd:ef00::1",
        "2600:1f18:abcd:ef00::2",
        "2600:1f18:abcd:ef00::3",
        "2600:1f18:abcd:efff:ffff:ffff:ffff:ffff",
    ]


@async_test
async def test_kms_encryption_is_refused_cleanly(streams: Any, echo_port: int) -> None:
    _, base = streams({"s-1": StreamTarget(token="tok", port=echo_port)}, kms_key_id="alias/session-key")
    with pytest.raises(ChannelClosedError, match="KMSEncryption failed on client"):
        async with DataChannel.open(url(base), "tok"):
            pass


def test_start_and_stop_from_synchronous_code(echo_port: int) -> None:
    server = StreamServer(resolve_session=lambda _: None)
    base = server.start()
    assert base.startswith("ws://127.0.0.1:")
    with pytest.raises(RuntimeError):
        server.start()
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.base_url


def test_a_taken_port_fails_start(echo_port: int) -> None:
    with pytest.raises(RuntimeError, match="could not start"):
        StreamServer(port=echo_port, resolve_session=lambda _: None).start()


def test_registry_resolver_maps_documents_to_targets() -> None:
    registry = SessionRegistry("ws://127.0.0.1:1")

    def start(document: str, **parameters: list[str]) -> str:
        return registry.start(
            account_id="111111111111",
            region="eu-west-1",
            target="i-0123456789abcdef0",
            document_name=document,
            parameters=parameters,
            owner="arn:aws:sts::111111111111:assumed-role/PassportPortal/alice",
            reason="",
        ).session_id

    resolve = registry_resolver(registry, ssh_port=lambda instance_id: 2222)
    ssh = resolve(start("AWS-StartSSHSession", portNumber=["22"]))
    forward = resolve(start("AWS-StartPortForwardingSession", portNumber=["5432"], localPortNumber=["15432"]))
    remote = resolve(start("AWS-StartPortForwardingSessionToRemoteHost", host=["db.internal"], portNumber=["5432"]))
    shell = resolve(start("SSM-SessionManagerRunShell"))

    assert ssh is not None and (ssh.host, ssh.port, ssh.destination_id) == ("127.0.0.1", 2222, "i-0123456789abcdef0")
    assert ssh.session_properties() == {"portNumber": "22"}
    assert forward is not None and forward.port == 5432
    assert forward.session_properties() == {
        "portNumber": "5432",
        "type": "LocalPortForwarding",
        "localPortNumber": "15432",
    }
    assert remote is not None and (remote.host, remote.port) == ("db.internal", 5432)
    assert remote.session_properties() == {"portNumber": "5432", "type": "LocalPortForwarding", "host": "db.internal"}
    assert shell is None
    assert resolve("nobody-0123") is None
    ended = start("AWS-StartSSHSession")
    registry.terminate("111111111111", ended)
    assert resolve(ended) is None


def test_start_session_through_devcloud_reaches_the_target(
    aws: Aws, cloud: DevCloud, echo_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The product's path: boto3 StartSession, then the StreamUrl and token it returns."""
    instance = aws.launch("stream-target")
    server = StreamServer(resolve_session=registry_resolver(cloud.runtime.sessions, ssh_port=lambda _: echo_port))
    monkeypatch.setattr(cloud, "stream_base_url", server.start())
    try:
        ssm = aws.client("ssm")
        started = ssm.start_session(
            Target=instance, DocumentName="AWS-StartSSHSession", Parameters={"portNumber": ["22"]}
        )

        async def talk() -> tuple[bytes, str | None]:
            async with DataChannel.open(started["StreamUrl"], started["TokenValue"]) as channel:
                await channel.write(b"SSH-2.0-test\r\n")
                greeting = await channel.readexactly(14)
                await asyncio.to_thread(ssm.terminate_session, SessionId=started["SessionId"])
                assert await channel.read() == b""
                return greeting, channel.closed_reason

        greeting, reason = asyncio.run(asyncio.wait_for(talk(), 30))
    finally:
        server.stop()
    assert greeting == b"SSH-2.0-test\r\n"
    assert reason == f"Session {started['SessionId']} was terminated."
