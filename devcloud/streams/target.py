"""What a data channel leads to: the session's target, and finding it in devcloud's session registry."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ssmchannel.documents import (
    AGENT_DENIED_REMOTE_IPS,
    PORT_FORWARDING_DOCUMENT,
    PORT_FORWARDING_TO_REMOTE_HOST_DOCUMENT,
    SSH_DOCUMENT,
)

DEFAULT_AGENT_VERSION = "3.3.1142.0"
# Agents older than this have no port plugin (AWS-StartSSHSession, port forwarding); the
# portal's PASSPORT_MIN_AGENT_VERSION defaults to the same value.
MIN_AGENT_VERSION = "2.3.672.0"
LOCAL_PORT_FORWARDING = "LocalPortForwarding"
PORT_FORWARDING_DOCUMENTS = frozenset({PORT_FORWARDING_DOCUMENT, PORT_FORWARDING_TO_REMOTE_HOST_DOCUMENT})


@dataclass(frozen=True)
class StreamTarget:
    """What the stream server needs to know about one session."""

    token: str
    port: int | None  # None: nothing to connect to (the session ends with an error)
    host: str = "127.0.0.1"
    document_name: str = SSH_DOCUMENT
    # The document's session properties as the agent sends them in the handshake;
    # derived from the document and port when empty.
    properties: Mapping[str, Any] = field(default_factory=dict)
    agent_version: str = DEFAULT_AGENT_VERSION
    destination_id: str = ""  # the instance id, echoed in channel_closed
    # The instance's VPC CIDR blocks, as its metadata service tells the agent; devcloud's local
    # hosts have none (as an agent whose metadata lookup fails: only AGENT_DENIED_REMOTE_IPS apply).
    vpc_cidr_blocks: tuple[str, ...] = ()
    # Set when the session is terminated through the API: the channel then closes.
    terminated: threading.Event | None = None

    def session_properties(self) -> dict[str, Any]:
        if self.properties:
            return dict(self.properties)
        properties: dict[str, Any] = {"portNumber": str(self.port or "")}
        if self.document_name in PORT_FORWARDING_DOCUMENTS:
            properties["type"] = LOCAL_PORT_FORWARDING
        if self.document_name == PORT_FORWARDING_TO_REMOTE_HOST_DOCUMENT:
            properties["host"] = self.host
        return properties

    @property
    def port_forwarding(self) -> bool:
        return self.session_properties().get("type") == LOCAL_PORT_FORWARDING


def vpc_reserved_addresses(cidr_blocks: Iterable[str]) -> list[str]:
    """The addresses the agent adds to its deny list per VPC CIDR block (port.go calculateAddress):
    the block's address as written and the next three (its last byte counted on, wrapping), and
    the block's broadcast address. Unreadable blocks are skipped."""
    addresses: list[str] = []
    for block in cidr_blocks:
        try:
            interface = ipaddress.ip_interface(block)
        except ValueError:
            continue
        packed = bytearray(interface.ip.packed)
        for _ in range(4):
            addresses.append(str(ipaddress.ip_address(bytes(packed))))
            packed[-1] = (packed[-1] + 1) % 256
        addresses.append(str(interface.network.broadcast_address))
    return addresses


def _same_address(a: str, b: str) -> bool:
    """As Go's ``net.IP.Equal``: an IPv4 address equals its IPv4-mapped IPv6 form."""

    def parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            address = ipaddress.ip_address(text.partition("%")[0])
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address

    first = parse(a)
    return first is not None and first == parse(b)


@dataclass(frozen=True)
class RemoteHost:
    """What the port plugin makes of the session's ``host`` before it dials (port.go validateParameters)."""

    refusal: str | None = None  # channel_closed's output when the host is refused
    # What it then dials, in order, the first that answers (port.go DialCall); None: no host
    # (the target's own port), empty: the host resolved to nothing ("missing address").
    addresses: tuple[str, ...] | None = None


def _is_ip_literal(host: str) -> bool:
    """As Go's net.ParseIP (a zone only on an IPv6 address): an address LookupHost returns as it is."""
    try:
        ipaddress.ip_address(host.partition("%")[0] if ":" in host else host)
    except ValueError:
        return False
    return True


async def _lookup_host(host: str) -> tuple[str, ...]:
    """Go's net.LookupHost as the agent (built with CGO_ENABLED=0: Go's own resolver) does it: an
    IP literal is itself; anything else is a name asked of /etc/hosts and DNS, so the numbers
    inet_aton alone reads (``2852039166``, ``0xa9.0xfe.0xa9.0xfe``, ``169.254.43518``) answer
    nothing, where the C library would read them as addresses. Empty when nothing answers."""
    if _is_ip_literal(host):
        return (host,)
    try:
        socket.inet_aton(host)
    except OSError:
        pass
    else:
        return ()
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ()
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_remote_host(target: StreamTarget) -> RemoteHost:
    """The port plugin's check of the session's ``host`` (port.go validateParameters).

    The agent resolves the host it was given once and refuses the session when any address it
    resolves to is in its deny list (AGENT_DENIED_REMOTE_IPS) or among its VPC's reserved
    addresses, naming the host as given: "Forwarding to IP address instance-data.ec2.internal is
    forbidden.". Otherwise it keeps those addresses and dials them, never the name again, so a
    name whose answer changes meanwhile reaches only what was checked. A host that does not
    resolve is not refused here: its dial fails with "missing address". No host: nothing to check.
    """
    host = str(target.session_properties().get("host") or "")
    if not host:
        return RemoteHost()
    addresses = await _lookup_host(host)
    denied = (*AGENT_DENIED_REMOTE_IPS, *vpc_reserved_addresses(target.vpc_cidr_blocks))
    for resolved in addresses:
        if any(_same_address(resolved, address) for address in denied):
            return RemoteHost(refusal=f"Forwarding to IP address {host} is forbidden.")
    return RemoteHost(addresses=addresses)


ResolveSession = Callable[[str], StreamTarget | None]


class _SessionLike(Protocol):
    target: str
    document_name: str
    parameters: dict[str, list[str]]
    token_value: str
    terminated: threading.Event

    @property
    def active(self) -> bool: ...


class _RegistryLike(Protocol):
    def get(self, session_id: str) -> Any: ...


def registry_resolver(
    registry: _RegistryLike,
    *,
    ssh_port: Callable[[str], int | None],
    agent_version: Callable[[str], str] | None = None,
) -> ResolveSession:
    """A ``resolve_session`` over devcloud's SessionRegistry.

    ``ssh_port(instance_id)`` is the loopback port of that local host's sshd (None if it has
    none): port 22 of an instance means it. Other ports are this machine's own (local hosts
    share its network), and a remote host of AWS-StartPortForwardingSessionToRemoteHost is
    taken as given (the agent side refuses the addresses the agent refuses,
    ``check_remote_host``). Shell documents are not served (devcloud has no agent shell).
    """

    def resolve(session_id: str) -> StreamTarget | None:
        session: _SessionLike | None = registry.get(session_id)
        if session is None or not session.active:
            return None
        if session.document_name != SSH_DOCUMENT and session.document_name not in PORT_FORWARDING_DOCUMENTS:
            return None
        default = "22" if session.document_name == SSH_DOCUMENT else "80"
        port_text = (session.parameters.get("portNumber") or [default])[0]
        try:
            port: int | None = int(port_text)
        except ValueError:
            return None
        host = (session.parameters.get("host") or ["127.0.0.1"])[0]
        if port == 22 and host == "127.0.0.1":
            port = ssh_port(session.target)
        properties: dict[str, Any] = {"portNumber": port_text}
        if session.document_name in PORT_FORWARDING_DOCUMENTS:
            properties["type"] = LOCAL_PORT_FORWARDING
            local = session.parameters.get("localPortNumber")
            if local:
                properties["localPortNumber"] = local[0]
        if session.document_name == PORT_FORWARDING_TO_REMOTE_HOST_DOCUMENT:
            properties["host"] = host
        return StreamTarget(
            token=session.token_value,
            host=host,
            port=port,
            document_name=session.document_name,
            properties=properties,
            agent_version=agent_version(session.target) if agent_version else DEFAULT_AGENT_VERSION,
            destination_id=session.target,
            terminated=session.terminated,
        )

    return resolve
