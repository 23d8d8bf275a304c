"""Who on this machine connected to the CLI's local forward.

127.0.0.1 is open to every user of a shared machine: without a check, another user could reach
the instance through the engineer's approved session, and the Logbook would name the engineer.
On Linux the kernel lists every TCP socket with the uid that created it (``/proc/net/tcp`` and
``/proc/net/tcp6``); the connecting socket is the row whose local address is our peer and whose
remote address is us. Elsewhere (macOS, Windows) the CLI cannot tell, and serves every local
connection, as the README and `passport forward --help` say.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Literal

Address = tuple[str, int]
ByteOrder = Literal["little", "big"]

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
# A socket already closed shows as TIME_WAIT (06) with uid 0 and no inode; a listener (0A) is
# never the connecting end.
_NOT_CONNECTING_STATES = frozenset({"06", "0A"})


def _row_address(field: str, byteorder: ByteOrder) -> Address | None:
    """'0100007F:9C40' (the kernel's 32-bit words in host byte order, the port in hex) -> ('127.0.0.1', 40000)."""
    text, sep, port_text = field.partition(":")
    if not sep or len(text) not in (8, 32):
        return None
    try:
        words = [int(text[start : start + 8], 16).to_bytes(4, byteorder) for start in range(0, len(text), 8)]
        port = int(port_text, 16)
    except ValueError:
        return None
    address = ipaddress.ip_address(b"".join(words))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv6 socket connected to 127.0.0.1 lists ::ffff:127.0.0.1
    return str(address), port


def _normal(address: Address) -> Address:
    parsed = ipaddress.ip_address(address[0].split("%", 1)[0])
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return str(parsed), int(address[1])


def socket_owner(table: str, peer: Address, local: Address, byteorder: ByteOrder = sys.byteorder) -> int | None:
    """The uid of the live socket in ``table`` (the text of /proc/net/tcp or tcp6) whose local
    address is ``peer`` and whose remote address is ``local``; None when there is none."""
    want_local, want_remote = _normal(peer), _normal(local)
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] in _NOT_CONNECTING_STATES or fields[9] == "0":
            continue  # a short line, a closed socket or a listener; inode 0: no process holds it
        if _row_address(fields[1], byteorder) != want_local or _row_address(fields[2], byteorder) != want_remote:
            continue
        return int(fields[7]) if fields[7].isdigit() else None
    return None


def refusal(peer: Address, local: Address) -> str | None:
    """Why the CLI refuses the connection from ``peer`` to its listener at ``local``, or None to serve it.

    Refused: a connection from another uid, and on Linux one whose socket is not listed (it
    closed already, or someone made it in a way the CLI cannot see). Served: one from this
    user, and every one where there is no /proc/net/tcp to ask (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    read_any = False
    for path in TABLES:  # tcp6 only when tcp does not list it (an IPv6 socket connected to 127.0.0.1)
        try:
            with open(path, encoding="ascii", errors="replace") as table_file:
                table = table_file.read()
        except OSError:
            continue
        read_any = True
        owner = socket_owner(table, peer, local)
        if owner is not None:
            if owner == os.getuid():
                return None
            return f"refused a connection to {local[0]}:{local[1]} from another user of this machine (uid {owner})"
    if not read_any:
        return None
    return f"refused a connection to {local[0]}:{local[1]}: could not tell which user of this machine made it"
