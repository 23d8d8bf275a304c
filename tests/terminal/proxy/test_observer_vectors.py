"""The sftp observer on hand-built packets: what real tools never send (garbled, oversized, hostile)."""

from __future__ import annotations

import hashlib
import random

import pytest

from terminal.proxy.observers import SftpObserver, Transfer, observer_for, safe_path
from terminal.proxy.observers.scp import ScpObserver
from terminal.proxy.observers.sftp import MAX_PACKET_LENGTH, MAX_PENDING_REQUESTS
from tests.terminal.proxy.sftp_wire import FX_READ as READ
from tests.terminal.proxy.sftp_wire import WRITE_NEW, close, data, handle, open_, packet, read, status, u32, write


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class Channel:
    """One sftp channel: bytes each way, one byte at a time unless told otherwise."""

    def __init__(self, **options: int) -> None:
        self.seen: list[Transfer] = []
        self.observer = SftpObserver(self.seen.append, **options)
        self.client(packet(1, u32(3)))
        self.server(packet(2, u32(3)))

    def client(self, *packets: bytes, whole: bool = False) -> None:
        self._feed(self.observer.client_data, b"".join(packets), whole)

    def server(self, *packets: bytes, whole: bool = False) -> None:
        self._feed(self.observer.server_data, b"".join(packets), whole)

    def _feed(self, feed: object, stream: bytes, whole: bool) -> None:
        assert callable(feed)
        for start in range(0, len(stream), len(stream) if whole else 1):
            feed(stream[start : start + (len(stream) if whole else 1)])

    def open(self, request: int, path: bytes, pflags: int, name: bytes) -> None:
        self.client(open_(request, path, pflags))
        self.server(handle(request, name))


def test_writes_out_of_order_are_hashed_in_offset_order() -> None:
    channel = Channel()
    channel.open(1, b"/srv/upload.bin", WRITE_NEW, b"h1")
    pieces = [bytes([n]) * 1000 for n in range(4)]
    held = []
    for request in (3, 1, 0, 2):  # a client may send them in any order
        channel.client(write(10 + request, b"h1", request * 1000, pieces[request]))
        held.append(channel.observer.pending_bytes)
    assert held == [1000, 2000, 1000, 0]  # 3 and 1 wait; 0 lets 1 through; 2 lets 3 through
    channel.server(*(status(10 + request) for request in range(4)))
    channel.client(close(20, b"h1"))
    assert channel.seen == []  # reported when the server confirms the close
    channel.server(status(20))
    assert channel.seen == [Transfer("/srv/upload.bin", "upload", 4000, sha(b"".join(pieces)), True, "sftp")]
    assert channel.observer.pending_bytes == 0


def test_a_failed_open_and_a_stat_like_open_are_no_transfers_but_an_empty_put_is() -> None:
    channel = Channel()
    channel.client(open_(1, b"/etc/shadow", READ))
    channel.server(status(1, 3))  # permission denied
    channel.client(read(2, b"h1", 0, 100))  # on a handle that was never given
    channel.server(data(2, b"secret"))
    channel.open(3, b"/etc/hosts", READ, b"h1")
    channel.client(close(4, b"h1"))
    channel.server(status(4))
    channel.open(5, b"/tmp/empty", WRITE_NEW, b"h1")
    channel.client(close(6, b"h1"))
    channel.server(status(6))
    assert channel.seen == [Transfer("/tmp/empty", "upload", 0, sha(b""), True, "sftp")]


def test_downloads_short_reads_and_eof_make_a_complete_file_and_no_eof_an_incomplete_one() -> None:
    channel = Channel()
    channel.open(1, b"/var/log/app.log", READ, b"h1")
    channel.client(read(2, b"h1", 0, 8), read(3, b"h1", 8, 8))
    channel.server(data(2, b"abcd"), data(3, b"ijklmnop"))  # short first read
    channel.client(read(4, b"h1", 4, 4), read(5, b"h1", 16, 8))
    channel.server(data(4, b"efgh"), status(5, 1))  # EOF at 16
    channel.client(close(6, b"h1"))
    channel.server(status(6))
    channel.open(7, b"/var/log/other.log", READ, b"h1")  # the handle name is reused
    channel.client(read(8, b"h1", 0, 8))
    channel.server(data(8, b"12345678"))
    channel.client(close(9, b"h1"))  # closed before EOF: the client stopped early
    channel.server(status(9))
    assert channel.seen == [
        Transfer("/var/log/app.log", "download", 16, sha(b"abcdefghijklmnop"), True, "sftp"),
        Transfer("/var/log/other.log", "download", 8, sha(b"12345678"), False, "sftp"),
    ]


def test_errors_from_the_server_and_more_data_than_asked_make_transfers_incomplete() -> None:
    channel = Channel()
    channel.open(1, b"/full/disk", WRITE_NEW, b"h1")
    channel.open(2, b"/greedy", READ, b"h2")
    channel.client(write(3, b"h1", 0, b"x" * 10), read(4, b"h2", 0, 4))
    channel.server(status(3, 4), data(4, b"too long"))  # write failed; 8 bytes for a 4-byte read
    channel.client(read(5, b"h2", 4, 4))
    channel.server(status(5, 1))
    channel.client(close(6, b"h1"), close(7, b"h2"))
    channel.server(status(6), status(7))
    assert [(t.path, t.size, t.complete) for t in channel.seen] == [("/full/disk", 10, False), ("/greedy", 8, False)]


def test_a_channel_closed_mid_transfer_reports_what_was_open_once() -> None:
    channel = Channel()
    channel.open(1, b"/a", WRITE_NEW, b"h1")
    channel.open(2, b"/b", READ, b"h2")
    channel.client(write(3, b"h1", 0, b"half"), read(4, b"h2", 0, 10), close(5, b"h1"))
    channel.server(data(4, b"0123456789"))
    channel.client(b"\x00\x00")  # and a packet cut short
    channel.observer.close()
    channel.observer.close()
    assert channel.seen == [
        Transfer("/a", "upload", 4, sha(b"half"), False, "sftp"),
        Transfer("/b", "download", 10, sha(b"0123456789"), False, "sftp"),
    ]


def test_a_hostile_peer_flooding_out_of_order_data_is_counted_but_not_held_beyond_the_limit() -> None:
    limit = 2**20
    channel = Channel(max_pending_bytes=limit)
    channel.open(1, b"/flood", WRITE_NEW, b"h1")
    piece = b"\xaa" * 200_000
    for number in range(1, 11):  # everything after a gap at offset 0
        channel.client(write(10 + number, b"h1", number * len(piece), piece), whole=True)
        assert channel.observer.pending_bytes <= limit
    assert channel.observer.pending_bytes == 0  # over the limit: dropped, hashing stopped
    channel.client(write(30, b"h1", 0, piece), close(31, b"h1"), whole=True)
    channel.server(status(31))
    assert channel.seen == [Transfer("/flood", "upload", 11 * len(piece), sha(b""), False, "sftp")]
    assert channel.observer.failure is None


def test_garbage_never_raises_and_stops_observing_with_open_files_reported_at_close() -> None:
    rng = random.Random(15)
    for _ in range(200):
        observer = SftpObserver(lambda transfer: None)
        observer.client_data(rng.randbytes(rng.randint(1, 300)))
        observer.server_data(rng.randbytes(rng.randint(1, 300)))
        observer.close()
    channel = Channel()
    channel.open(1, b"/before", WRITE_NEW, b"h1")
    channel.client(write(2, b"h1", 0, b"seen"))
    channel.client(u32(1) + b"\x03")  # an OPEN without its fields
    assert channel.observer.failure == "packet shorter than its fields"
    channel.client(write(3, b"h1", 4, b"ignored"), close(4, b"h1"))
    channel.server(status(4))
    channel.observer.close()
    assert channel.seen == [Transfer("/before", "upload", 4, sha(b"seen"), False, "sftp")]


def test_an_oversized_packet_is_refused_before_its_body_is_buffered() -> None:
    channel = Channel()
    biggest = MAX_PACKET_LENGTH - (1 + 4 + 4 + 2 + 8 + 4)  # type, id, handle "h1", offset, data length
    channel.open(1, b"/big", WRITE_NEW, b"h1")
    channel.client(write(2, b"h1", 0, b"b" * biggest) + u32(2**31) + b"\x06", whole=True)  # the write still counts
    assert channel.observer.failure == f"packet length {2**31} outside 1..{MAX_PACKET_LENGTH}"
    channel.client(b"z" * 2**20, whole=True)
    assert channel.observer._client.buffered == 0
    channel.observer.close()
    assert [(t.size, t.complete) for t in channel.seen] == [(biggest, False)]


def test_too_many_requests_in_flight_stops_observing() -> None:
    channel = Channel()
    channel.open(1, b"/f", READ, b"h1")
    channel.client(*(read(10 + n, b"h1", n * 8, 8) for n in range(MAX_PENDING_REQUESTS)), whole=True)
    assert channel.observer.failure is None
    channel.client(read(9, b"h1", 0, 8), whole=True)
    assert channel.observer.failure == f"more than {MAX_PENDING_REQUESTS} requests in flight"


def test_a_later_protocol_version_is_not_observed_and_a_failing_callback_does_not_escape() -> None:
    observer = SftpObserver(lambda transfer: None)
    observer.server_data(packet(2, u32(6)))
    assert observer.failure == "sftp version 6 is not observed"

    def broken(transfer: Transfer) -> None:
        raise RuntimeError("database down")

    channel = Channel()
    channel.observer._on_transfer = broken
    channel.open(1, b"/x", WRITE_NEW, b"h1")
    channel.client(close(2, b"h1"))
    channel.server(status(2))
    assert channel.observer.failure is None


def test_paths_keep_hostile_text_as_data_and_become_storable() -> None:
    channel = Channel()
    hostile = b"/tmp/$(reboot) `id`;\n\x1b[31mred"
    channel.open(1, hostile, WRITE_NEW, b"h1")
    channel.open(2, b"/tmp/bad\xff\x00name", WRITE_NEW, b"h2")
    channel.client(close(3, b"h1"), close(4, b"h2"))
    channel.server(status(3), status(4))
    assert [t.path for t in channel.seen] == [hostile.decode(), "/tmp/bad\\xff\\x00name"]
    assert all(t.path.encode("utf-8") for t in channel.seen)
    assert safe_path(b"a" * 5000) == "a" * 4096 + "...[truncated]"


@pytest.mark.parametrize(
    ("command", "subsystem", "kind"),
    [
        (None, "sftp", SftpObserver),
        ("scp -t /tmp", None, ScpObserver),
        ("scp -f /etc/hosts", None, ScpObserver),
        ("ls -la", None, type(None)),
        (None, None, type(None)),
        (None, "netconf", type(None)),
    ],
)
def test_observer_for_picks_by_subsystem_and_command(command: str | None, subsystem: str | None, kind: type) -> None:
    assert type(observer_for(command=command, subsystem=subsystem, on_transfer=lambda transfer: None)) is kind
