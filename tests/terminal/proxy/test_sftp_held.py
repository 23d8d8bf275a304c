"""The sftp observer on requests that name a handle before the server has answered the OPEN that makes it.

Such requests wait in the observer, in order, and are accounted once the answer comes; what it cannot
follow (a request id used twice at once, too much waiting, the channel ending first) stops the observing,
and the bytes of what was waiting are handed over (``unaccounted``) for the relay to record.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from terminal.proxy.observers import Change, SftpObserver, Transfer
from terminal.proxy.observers.sftpheld import MAX_HELD_BYTES
from tests.terminal.proxy.sftp_wire import (
    FX_APPEND,
    FX_READ,
    FX_WRITE,
    WRITE_NEW,
    close,
    copy_data,
    data,
    handle,
    init,
    open_,
    packet,
    read,
    realpath,
    remove,
    status,
    string,
    u32,
    u64,
    write,
)

H0, H1 = u32(0), u32(1)
NO_SUCH_FILE, FAILURE, EOF = 2, 4, 1


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class Pipelined:
    """One sftp channel fed in chunks of ``size`` bytes (None: each call's bytes whole)."""

    def __init__(self, size: int | None = None) -> None:
        self.transfers: list[Transfer] = []
        self.changes: list[Change] = []
        self.observer = SftpObserver(self.transfers.append, on_change=self.changes.append)
        self.size = size
        self.client(init())
        self.server(packet(2, u32(3)))

    def client(self, *packets: bytes) -> None:
        self._feed(self.observer.client_data, b"".join(packets))

    def server(self, *packets: bytes) -> None:
        self._feed(self.observer.server_data, b"".join(packets))

    def _feed(self, feed: object, stream: bytes) -> None:
        assert callable(feed)
        size = self.size or len(stream)
        for start in range(0, len(stream), size):
            feed(stream[start : start + size])


@pytest.mark.parametrize("size", [None, 1, 7])
def test_writes_reads_and_closes_sent_before_the_handle_are_accounted_when_it_comes(size: int | None) -> None:
    channel = Pipelined(size)
    up, down = b"pipelined upload\n", b"0123456789"
    channel.client(
        open_(1, b"/up", FX_WRITE | FX_APPEND),
        open_(2, b"/down", FX_READ),
        write(3, H0, 0, up),
        read(4, H1, 0, 64),
        read(5, H1, 10, 64),
        close(6, H0),
        close(7, H1),
    )
    assert channel.transfers == []
    channel.server(handle(1, H0), handle(2, H1), status(3), data(4, down), status(5, EOF), status(6), status(7))
    assert channel.transfers == [
        Transfer("/up", "upload", len(up), sha(up), True, "sftp"),
        Transfer("/down", "download", len(down), sha(down), True, "sftp"),
    ]
    assert channel.observer.failure is None


def test_a_copy_and_a_setstat_on_handles_not_yet_answered_name_their_files() -> None:
    channel = Pipelined()
    channel.client(
        open_(1, b"/src", FX_READ),
        open_(2, b"/dst", WRITE_NEW),
        copy_data(3, H0, H1),
        packet(10, u32(4), string(H1), u32(0x4), u32(0o4755)),  # FSETSTAT: mode
        close(5, H0),
        close(6, H1),
    )
    channel.server(handle(1, H0), handle(2, H1), *(status(n) for n in range(3, 7)))
    assert channel.changes == [
        Change("copy-data", "/dst", "ok", target="/src"),
        Change("setstat", "/dst", "ok", attributes={"mode": "4755"}),
    ]
    assert channel.transfers == [Transfer("/dst", "upload", 0, sha(b""), True, "sftp")]


def test_a_write_whose_open_failed_is_not_given_to_a_later_open_that_gets_the_same_handle() -> None:
    """The server answers the WRITE (invalid handle) before the later OPEN takes that handle."""
    channel = Pipelined()
    channel.client(open_(1, b"/missing/a", WRITE_NEW), write(2, H0, 0, b"lost"), open_(3, b"/b", WRITE_NEW))
    channel.server(status(1, NO_SUCH_FILE), status(2, FAILURE), handle(3, H0))
    channel.client(write(4, H0, 0, b"kept"), close(5, H0))
    channel.server(status(4), status(5))
    assert channel.transfers == [Transfer("/b", "upload", 4, sha(b"kept"), True, "sftp")]


def test_a_handle_closed_and_opened_again_in_one_go_goes_to_the_file_opened_last() -> None:
    channel = Pipelined()
    channel.client(open_(1, b"/first", WRITE_NEW))
    channel.server(handle(1, H0))
    channel.client(write(2, H0, 0, b"one"), close(3, H0), open_(4, b"/second", WRITE_NEW), write(5, H0, 0, b"two"),
                   close(6, H0))  # fmt: skip
    channel.server(status(2), status(3), handle(4, H0), status(5), status(6))
    assert channel.transfers == [
        Transfer("/first", "upload", 3, sha(b"one"), True, "sftp"),
        Transfer("/second", "upload", 3, sha(b"two"), True, "sftp"),
    ]


def test_requests_on_known_handles_wait_behind_one_that_waits_so_that_their_order_holds() -> None:
    """A copy from a known file into one not yet open, then the known file closed: the copy still names
    the file it read."""
    channel = Pipelined()
    channel.client(open_(1, b"/known", FX_READ))
    channel.server(handle(1, H0))
    channel.client(open_(2, b"/new", WRITE_NEW), copy_data(3, H0, H1), close(4, H0), close(5, H1))
    channel.server(handle(2, H1), status(3), status(4), status(5))
    assert channel.changes == [Change("copy-data", "/new", "ok", target="/known")]


def test_a_request_id_used_again_while_in_flight_stops_observing() -> None:
    for second in (remove(1, b"/never-there"), realpath(1, b"."), write(1, H0, 0, b"x")):
        channel = Pipelined()
        channel.client(open_(1, b"/victim", WRITE_NEW), second)
        assert channel.observer.failure == "request id 1 used again while in flight"
        channel.observer.close()
        assert channel.changes == []
    channel = Pipelined()  # once answered, an id may come again (a client's counter wraps)
    channel.client(realpath(1, b"."))
    channel.server(packet(104, u32(1), u32(0)))
    channel.client(open_(1, b"/f", WRITE_NEW))
    channel.server(handle(1, H0))
    channel.client(close(1, H0))
    channel.server(status(1))
    assert channel.observer.failure is None and [t.path for t in channel.transfers] == ["/f"]


@pytest.mark.parametrize("size", [1, 5, 300, 4096])
def test_what_waited_in_earlier_chunks_is_handed_over_exactly_when_observing_stops(size: int) -> None:
    """The relay records the chunk that stopped the observer itself; ``unaccounted`` is the waiting
    requests' bytes that crossed before it (of a request cut across the two, its first part)."""
    channel = Pipelined(size)
    opening = open_(1, b"/victim", WRITE_NEW)
    waiting = write(2, H0, 0, b"payload " * 40) + close(3, H0)
    stream = opening + waiting + remove(1, b"/x")
    for chunk_start in range(0, len(stream), size):
        channel.observer.client_data(stream[chunk_start : chunk_start + size])
        if channel.observer.failure is not None:
            break
    assert channel.observer.failure == "request id 1 used again while in flight"
    assert channel.observer.unaccounted == stream[min(len(opening), chunk_start) : chunk_start]


def test_too_much_waiting_stops_observing_and_hands_the_bytes_over() -> None:
    channel = Pipelined()
    channel.client(open_(1, b"/big", WRITE_NEW))
    piece = b"\xab" * 200_000
    sent = []
    for number in range(MAX_HELD_BYTES // len(piece) + 1):
        sent.append(write(10 + number, H0, number * len(piece), piece))
        channel.client(sent[-1])
    assert channel.observer.failure == f"more than {MAX_HELD_BYTES} bytes of requests waiting for a handle"
    assert channel.observer.unaccounted == b"".join(sent[:-1])


def test_the_channel_ending_with_requests_waiting_stops_observing_and_reports_the_unanswered_open() -> None:
    channel = Pipelined(3)
    waiting = write(2, H0, 0, b"never seen answered") + close(3, H0)
    cut = write(4, H0, 0, b"cut short")[:10]
    channel.client(open_(1, b"/victim", WRITE_NEW), waiting, cut)
    channel.observer.close()
    assert channel.observer.failure == "the channel ended with 2 requests waiting for a handle"
    assert channel.observer.unaccounted == waiting + cut
    assert channel.transfers == [Transfer("/victim", "upload", 0, sha(b""), False, "sftp")]


def test_a_held_request_that_breaks_the_protocol_once_taken_is_handed_over() -> None:
    channel = Pipelined()
    broken = packet(6, u32(2), string(H0), u64(0), u32(100) + b"fewer than 100 bytes")  # a WRITE cut short
    channel.client(open_(1, b"/f", WRITE_NEW), broken)
    channel.server(handle(1, H0))
    assert channel.observer.failure == "packet shorter than its fields"
    assert channel.observer.unaccounted == broken


def test_a_part_of_a_request_crossed_before_the_server_broke_the_protocol_is_handed_over() -> None:
    channel = Pipelined()
    channel.client(open_(1, b"/f", WRITE_NEW))
    channel.server(handle(1, H0))
    half = write(2, H0, 0, b"z" * 1000)[:600]
    channel.client(half)
    channel.server(u32(2**31))
    assert channel.observer.failure is not None and channel.observer.unaccounted == half


def test_random_pipelining_against_in_order_answers_never_loses_a_write() -> None:
    """Files opened, written and closed in random interleavings, all sent before any answer, answered in
    order by a server that numbers handles as OpenSSH's does: every file is reported with its content."""
    rng = random.Random(7)
    for _ in range(50):
        channel = Pipelined(rng.choice([None, 1, 13]))
        free, open_files, requests, answers, contents = [], {}, [], [], {}
        next_index, request = 0, 1
        for step in range(rng.randint(1, 12)):
            if open_files and rng.random() < 0.4:
                path = rng.choice(sorted(open_files))
                index = open_files.pop(path)
                requests.append(close(request, u32(index)))
                answers.append(status(request))
                free.append(index)
            else:
                path = f"/file-{step}".encode()
                if free:
                    index = free.pop()
                else:
                    index, next_index = next_index, next_index + 1
                content = rng.randbytes(rng.randint(0, 50))
                requests += [open_(request, path, WRITE_NEW), write(request + 1, u32(index), 0, content)]
                answers += [handle(request, u32(index)), status(request + 1)]
                open_files[path], contents[path.decode()] = index, content
                request += 1
            request += 1
        for index in open_files.values():
            requests.append(close(request, u32(index)))
            answers.append(status(request))
            request += 1
        channel.client(*requests)
        channel.server(*answers)
        assert channel.observer.failure is None
        assert {t.path: (t.size, t.sha256, t.complete) for t in channel.transfers} == {
            path: (len(content), sha(content), True) for path, content in contents.items()
        }


def test_the_start_of_a_reply_that_crossed_before_observing_stopped_is_handed_over() -> None:
    """A DATA reply cut across chunks: its start went to the client before the client broke the protocol,
    and no report counts it (a file's size counts whole replies), so it is handed over as the instance's."""
    channel = Pipelined()
    channel.client(open_(1, b"/secret\x1b[2J\n\x00", FX_READ))
    channel.server(handle(1, H0))
    channel.client(read(2, H0, 0, 4096))
    reply = data(2, b"\x1b]0;owned\x07" * 300)
    channel.server(reply[:1000])
    channel.client(read(2, H0, 0, 4096))
    assert channel.observer.failure == "request id 2 used again while in flight"
    assert (channel.observer.unaccounted, channel.observer.unaccounted_out) == (b"", reply[:1000])
    channel.observer.close()
    assert channel.transfers == [Transfer("/secret\x1b[2J\n\\x00", "download", 0, sha(b""), False, "sftp")]


def test_the_part_of_a_reply_that_crossed_before_the_chunk_that_broke_the_protocol_is_handed_over() -> None:
    channel = Pipelined(7)
    channel.client(open_(1, b"/f", FX_READ))
    channel.server(handle(1, H0))
    channel.client(read(2, H0, 0, 64))
    whole, newer = data(2, b"counted"), packet(2, u32(2**32 - 1))  # a VERSION the observer does not follow
    stream = whole + newer
    cut = len(whole) + 3
    channel.observer.server_data(stream[:cut])
    channel.observer.server_data(stream[cut:])
    assert channel.observer.failure == f"sftp version {2**32 - 1} is not observed"
    assert (channel.observer.unaccounted, channel.observer.unaccounted_out) == (b"", newer[:3])
