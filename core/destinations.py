"""Forward destinations: the ``host:port`` pairs beyond the instance that ``ssh -L`` may reach
through it (an RDS endpoint, say), as an account lists them (``AwsAccount.forward_destinations``).

One strict spelling, because two parties compare the string literally: the recording proxy, and
sshd's ``permitopen`` on the instance, which takes literal names only (no wildcards, no ranges).
A host is a DNS name (lowercase letters, digits, hyphens and dots; the last label starts with a
letter, so nothing that inet_aton would read as a number such as ``0x7f000001`` or ``010.1``),
an IPv4 address in dotted quad, or an IPv6 address in brackets (compressed, no zone); the port a
whole number 1-65535 without leading zeros. Not the instance itself, nor the addresses EC2 keeps
for it (``EC2_INSTANCE_ADDRESSES``: instance metadata and the like), nor the names known to lead
there (``names_ec2_instance_address``). Nothing else: no ``*``, quote, comma, space or control
character ever reaches an authorized_keys line or a shell.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from ssmchannel.documents import AGENT_DENIED_REMOTE_IPS

MAX_FORWARD_DESTINATIONS = 32
# How ssh -L names the instance itself: its ports are the account's forwarding ports, not destinations.
INSTANCE_ITSELF = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_DESTINATION_LENGTH = 253 + 6  # the longest DNS name, a colon and a port
# What EC2 keeps for the instance itself, which the SSM agent never forwards to
# (``AGENT_DENIED_REMOTE_IPS``). Through ssh -L it is the instance's sshd that dials, which has no such list.
EC2_INSTANCE_ADDRESSES = frozenset(ipaddress.ip_address(address) for address in AGENT_DENIED_REMOTE_IPS)

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(rf"^(?:{_LABEL}\.)*[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?$")
_IPV4_RE = re.compile(r"^[0-9]{1,3}(?:\.[0-9]{1,3}){3}$")
_IPV6_RE = re.compile(r"^[0-9a-f:.]{2,45}$")
_PORT_RE = re.compile(r"^[1-9][0-9]{0,4}$")


class InvalidDestination(ValueError):
    """Not a ``host:port`` Passport may write into a permitopen option."""


class Destination(NamedTuple):
    host: str  # as ssh -L sends it: an IPv6 address without its brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _host(text: str) -> str:
    """The host in its one spelling (lowercase; IPv6 compressed, without brackets), or raise."""
    if ":" in text:
        if not _IPV6_RE.fullmatch(text):
            raise InvalidDestination(f"“{text[:60]}” is not an IPv6 address")
        try:
            return ipaddress.IPv6Address(text).compressed
        except ValueError:
            raise InvalidDestination(f"“{text[:60]}” is not an IPv6 address") from None
    if _IPV4_RE.fullmatch(text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise InvalidDestination(f"“{text[:60]}” is not an IPv4 address") from None
    if len(text) > 253 or not _NAME_RE.fullmatch(text):
        raise InvalidDestination(
            f"“{text[:60]}” is not a host name: letters, digits, hyphens and dots, the last part starting with a letter"
        )
    return text


def parse_destination(text: object) -> Destination:
    """``host:port`` (``[v6]:port`` for IPv6) as one Destination, the host lowercased; else raise."""
    if not isinstance(text, str) or not text.isascii() or not text.isprintable():
        raise InvalidDestination("a destination is host:port in plain characters")
    if len(text) > MAX_DESTINATION_LENGTH:
        raise InvalidDestination("a destination is at most 259 characters")
    text = text.lower()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]:")
        if not bracket:
            raise InvalidDestination(f"“{text[:60]}” is not [IPv6 address]:port")
        if ":" not in host:
            raise InvalidDestination(f"“{text[:60]}”: only an IPv6 address goes in brackets")
    else:
        host, colon, port = text.rpartition(":")
        if not colon or not host:
            raise InvalidDestination(f"“{text[:60]}” is not host:port")
        if ":" in host:
            raise InvalidDestination(f"“{text[:60]}”: an IPv6 address goes in brackets, [address]:port")
    if not _PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise InvalidDestination(f"“{port[:20]}” is not a port: ports are whole numbers from 1 to 65535")
    if _address(host) is None and names_ec2_instance_address(host):
        raise InvalidDestination(
            f"“{text[:60]}” names an address EC2 keeps for the instance (metadata, DNS, time, activation):"
            " the instance resolves it there, and the SSM agent forwards to none of them, nor does Passport"
        )
    destination = Destination(_host(host), int(port))
    if destination.host in INSTANCE_ITSELF or _names_this_host(destination.host):
        # The proxy and the lines treat these names as the instance's own, on the account's ports.
        raise InvalidDestination(f"“{text[:60]}” is the instance itself: open its port as a forwarding port instead")
    if _address(destination.host) in EC2_INSTANCE_ADDRESSES:
        raise InvalidDestination(
            f"“{text[:60]}” is an address EC2 keeps for the instance (metadata, DNS, time, activation):"
            " the SSM agent forwards to none of them, nor does Passport"
        )
    if reaches_instance_sshd(destination):
        raise InvalidDestination(
            f"“{text[:60]}” is the instance's own sshd under another address: a tunnel to it would not be recorded"
        )
    return destination


# Names resolvers answer with the host itself (RFC 6761's localhost and its subdomains, and the
# loopback names the distributions' /etc/hosts have), and the addresses meaning "this host" (0.0.0.0, ::).
_LOCAL_NAMES = frozenset(
    {
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        # Amazon Linux's and RHEL's /etc/hosts.
        "localhost4",
        "localhost6",
        "localhost4.localdomain4",
        "localhost6.localdomain6",
    }
)


def _names_this_host(host: str) -> bool:
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    address = _address(host)
    return address is not None and address.is_unspecified


# EC2's name for its metadata service: ``instance-data`` through the VPC's search domain, in full
# ``instance-data.ec2.internal`` (us-east-1) or ``instance-data.<region>.compute.internal``.
_METADATA_NAME = "instance-data"
_HEX_ADDRESS_RE = re.compile(r"[0-9a-f]{8}")


def names_ec2_instance_address(host: str) -> bool:
    """Whether a host name is one the instance would resolve to an address EC2 keeps for it: EC2's
    own name for its metadata service, or a name that spells one of the addresses, as wildcard DNS
    (``169.254.169.254.nip.io``, ``169-254-169-254.sslip.io``, nip.io's hex ``a9fea9fe.nip.io``,
    sslip.io's ``fd00-ec2--254.sslip.io``) and EC2's ``ip-a-b-c-d`` host names do. Any case, with or
    without the final dot.

    The portal does not resolve names: the instance's DNS answers them, not the portal's, and could
    answer otherwise by the time it is asked. Any other name that leads there is not caught here;
    the SSM agent resolves and refuses it (port.go validateParameters), but through ``ssh -L`` it is
    the instance's sshd that resolves and dials, with no such list.
    """
    name = host.lower().removesuffix(".")
    labels = name.split(".")
    if labels[0] == _METADATA_NAME and (len(labels) == 1 or labels[-1] == "internal"):
        return True
    parts = re.split(r"[.-]", name)
    for start in range(len(parts) - 3):
        if _address(".".join(parts[start : start + 4])) in EC2_INSTANCE_ADDRESSES:
            return True
    for part in parts:
        if _HEX_ADDRESS_RE.fullmatch(part) and ipaddress.IPv4Address(int(part, 16)) in EC2_INSTANCE_ADDRESSES:
            return True
    return any("-" in label and _address(label.replace("-", ":")) in EC2_INSTANCE_ADDRESSES for label in labels)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def reaches_instance_sshd(destination: Destination) -> bool:
    """Port 22 on a loopback address (127.0.0.2, ::ffff:127.0.0.1) is the instance's own sshd,
    whose sessions the recording proxy cannot read; another loopback port may stand for a service
    an admin listed on purpose."""
    address = _address(destination.host)
    return (
        destination.port == 22
        and address is not None
        and (address.is_loopback or address.is_unspecified or destination.host in INSTANCE_ITSELF)
    )


def canonical_destination(text: object) -> str:
    """The one spelling of a destination (``parse_destination``), as it is stored and written."""
    return str(parse_destination(text))


def is_canonical_destination(value: object) -> bool:
    try:
        return canonical_destination(value) == value
    except InvalidDestination:
        return False


def destination_of_request(host: str, port: int) -> Destination | None:
    """What ``ssh -L`` asked for (a direct-tcpip channel's host and port) in the one spelling, or
    None if it is not a destination at all (then it matches none)."""
    if not isinstance(host, str) or not host.isascii() or not 1 <= port <= 65535:
        return None
    try:
        return Destination(_host(host.lower()), port)
    except InvalidDestination:
        return None


def valid_destinations(stored: object) -> tuple[str, ...]:
    """The stored list's destinations in their one spelling, in order, each once; anything else in
    it (written past validation: a shell, a bad migration) is never taken for a destination."""
    if not isinstance(stored, list):
        return ()
    seen: dict[str, None] = {}
    for item in stored:
        if is_canonical_destination(item):
            seen.setdefault(item, None)
    return tuple(seen)[:MAX_FORWARD_DESTINATIONS]
