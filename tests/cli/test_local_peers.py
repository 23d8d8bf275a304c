"""Who connected to the CLI's local forward: /proc/net/tcp rows (as Linux writes them), and real sockets."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from passport_cli.local_peers import refusal, socket_owner

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
TCP6_HEADER = (
    "  sl  local_address                         remote_address                        st tx_queue rx_queue "
    "tr tm->when retrnsmt   uid  timeout inode\n"
)
# 127.0.0.1:35119 listening (run by root), the other user's socket 127.0.0.1:43524 connected to it
# (uid 1001), our accepted end of that connection, and a closed connection from port 43600 in TIME_WAIT.
TCP = TCP_HEADER + (
    "  15: 0100007F:892F 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0        0 541340 1 0 100 0 0 10 0\n"
    "  25: 0100007F:AA04 0100007F:892F 01 00000000:00000000 00:00000000 00000000 1001 0 541345 2 0 20 0 0 10 -1\n"
    " 210: 0100007F:892F 0100007F:AA04 01 00000000:00000000 00:00000000 00000000 0        0 541346 1 0 20 0 0 10 -1\n"
    " 211: 0100007F:AA50 0100007F:892F 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0\n"
)
# An IPv6 socket connected to 127.0.0.1:35119 lists itself as ::ffff:127.0.0.1:43512.
TCP6 = TCP6_HEADER + (
    "   2: 0000000000000000FFFF00000100007F:A9F8 0000000000000000FFFF00000100007F:892F 01 00000000:00000000 "
    "00:00000000 00000000  1002        0 541341 2 0 20 0 0 10 -1\n"
)
LISTENER = ("127.0.0.1", 35119)


def test_the_connecting_sockets_row_gives_its_uid() -> None:
    assert socket_owner(TCP, ("127.0.0.1", 43524), LISTENER, "little") == 1001
    # Our own end of the connection (local: the listener) is not the peer's row.
    assert socket_owner(TCP, LISTENER, ("127.0.0.1", 43524), "little") == 0
    assert socket_owner(TCP, ("127.0.0.1", 43525), LISTENER, "little") is None


def test_an_ipv6_socket_connected_to_127_0_0_1_is_found_in_tcp6() -> None:
    assert socket_owner(TCP6, ("127.0.0.1", 43512), LISTENER, "little") == 1002
    assert socket_owner(TCP6, ("::ffff:127.0.0.1", 43512), ("::ffff:127.0.0.1", 35119), "little") == 1002
    assert socket_owner(TCP, ("127.0.0.1", 43512), LISTENER, "little") is None


def test_a_closed_socket_listener_or_garbled_row_gives_no_uid() -> None:
    assert socket_owner(TCP, ("127.0.0.1", 43600), LISTENER, "little") is None  # TIME_WAIT: uid 0, no inode
    garbled = TCP_HEADER + "  1: 0100007G:AA04 0100007F:892F 01 0:0 0:0 0 1001 0 5 2\n  2: short\n"
    assert socket_owner(garbled, ("127.0.0.1", 43524), LISTENER, "little") is None


def test_big_endian_rows() -> None:
    row = TCP_HEADER + "  1: 7F000001:AA04 7F000001:892F 01 0:0 0:0 0 1001 0 5 2\n"
    assert socket_owner(row, ("127.0.0.1", 43524), LISTENER, "big") == 1001


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
needs_root_and_setpriv = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="connects as another user with setpriv: Linux, root",
)


@needs_root_and_setpriv
def test_refusal_on_real_sockets() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as mine:
            accepted, peer = listener.accept()
            with accepted:
                assert refusal(peer, accepted.getsockname()) is None
            del mine
        connect = f"import socket,sys;s=socket.create_connection(('127.0.0.1',{port}));sys.stdin.read()"
        other = subprocess.Popen([*AS_NOBODY, sys.executable, "-c", connect], stdin=subprocess.PIPE)
        try:
            accepted, peer = listener.accept()
            with accepted:
                assert refusal(peer, accepted.getsockname()) == (
                    f"refused a connection to 127.0.0.1:{port} from another user of this machine (uid 65534)"
                )
        finally:
            other.communicate(timeout=30)
        # Its socket gone (and so unlisted), the connection is refused too: the CLI cannot say whose it was.
        assert refusal(peer, ("127.0.0.1", port)) == (
            f"refused a connection to 127.0.0.1:{port}: could not tell which user of this machine made it"
        )
