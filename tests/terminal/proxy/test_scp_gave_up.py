"""What the legacy scp observer hands over when it stops: the source's bytes that crossed before the chunk
it stopped on and that no report covers (a record line not yet answered, what the source sent ahead of an
answer, a line cut short), for the relay to record. A file the sink accepted is reported (incomplete when
cut off), so its content is covered; a record the sink answered is accounted for.

The source is the client for an upload (``unaccounted``) and the instance for a download
(``unaccounted_out``, a program named scp on the instance's PATH may send anything).
"""

from __future__ import annotations

import hashlib
import random

import pytest

from terminal.proxy.observers import ScpObserver, Transfer, safe_path
from terminal.proxy.observers.scp import MAX_LINE

OK = b"\x00"
# What a name on the wire may carry: ANSI and OSC escapes, a command substitution, a carriage return, NUL,
# bytes that are not UTF-8. (A newline ends the record: scp cannot send one.)
HOSTILE = b"\x1b]0;owned\x07\x1b[2J $(reboot) \r\x00\xff\xfe.sh"
HUGE = 10**20 - 1  # the most digits a size may have


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def record(name: bytes, size: int) -> bytes:
    return b"C0644 %d %s\n" % (size, name)


class Channel:
    """One scp channel; ``source`` and ``sink`` feed each call's bytes in chunks of ``size`` (None: whole)."""

    def __init__(self, direction: str = "upload", size: int | None = None) -> None:
        self.seen: list[Transfer] = []
        command = "scp -d -t /srv" if direction == "upload" else "scp -f /srv/notes"
        observer = ScpObserver.for_command(command, self.seen.append)
        assert observer is not None
        self.observer = observer
        self.size = size

    def _feed(self, side: str, stream: bytes) -> None:
        client = (side == "source") == (self.observer.direction == "upload")
        feed = self.observer.client_data if client else self.observer.server_data
        size = self.size or len(stream) or 1
        for start in range(0, len(stream), size):
            feed(stream[start : start + size])

    def source(self, *parts: bytes) -> None:
        self._feed("source", b"".join(parts))

    def sink(self, *parts: bytes) -> None:
        self._feed("sink", b"".join(parts))

    @property
    def handed_over(self) -> tuple[bytes, bytes]:
        """(client's, instance's) bytes the observer hands over."""
        return self.observer.unaccounted, self.observer.unaccounted_out


@pytest.mark.parametrize("size", [None, 1, 7])
def test_a_file_sent_ahead_of_its_answer_is_handed_over_when_the_source_runs_too_far_ahead(size: int | None) -> None:
    """`cat crafted | ssh host scp -t dir`: the instance's scp reads its input in order, so it writes the file
    without the client waiting for any answer; the observer held it, and was still waiting, when it stopped."""
    channel = Channel(size=size)
    channel.sink(OK)
    ahead = record(HOSTILE, 31) + b"echo HIDDEN-$((6*7)) >> ~/.rc\n\x00" + OK
    channel.source(ahead)
    channel.observer.client_data(b"C0644 9000 second\n" + b"x" * MAX_LINE)  # the relay records this chunk
    assert channel.observer.failure == "the source ran ahead of the sink's answer"
    channel.observer.close()
    assert channel.seen == []
    assert channel.handed_over == (ahead, b"")


def test_a_download_sent_ahead_of_its_answer_is_handed_over_as_the_instances_bytes() -> None:
    channel = Channel("download")
    channel.sink(OK)
    ahead = record(HOSTILE, HUGE) + b"\x1b[31msecret\x1b[0m\x00" * 40
    channel.source(ahead)
    channel.source(b"y" * (MAX_LINE + 1))
    assert channel.observer.failure == "the source ran ahead of the sink's answer"
    channel.observer.close()
    assert channel.seen == []
    assert channel.handed_over == (b"", ahead)


def test_what_waited_for_an_answer_is_handed_over_when_the_sink_breaks_the_protocol() -> None:
    for answer in (b"\x01" + b"e" * MAX_LINE, OK + OK + OK):  # too long; an answer to nothing
        channel = Channel()
        channel.source(record(b"early", 3), b"abc", OK)  # before the sink is even ready
        channel.sink(OK)  # ready: the record waits for its answer, the content is held behind it
        channel.sink(answer)
        assert channel.observer.failure in ("answer line too long", "an answer to nothing")
        channel.observer.close()
        if answer == OK + OK + OK:  # the file was accepted and answered before the extra answer
            assert channel.seen == [Transfer("/srv/early", "upload", 3, sha(b"abc"), True, "scp")]
            assert channel.handed_over == (b"", b"")
        else:
            assert channel.seen == []
            assert channel.handed_over == (record(b"early", 3) + b"abc" + OK, b"")


def test_what_was_held_behind_a_record_the_observer_cannot_take_is_handed_over_whole() -> None:
    """The sink's answer lets the held bytes through; one of them breaks the protocol, while the relay feeds
    the sink's chunk: every held byte crossed before it."""
    channel = Channel()
    after = b"X not a record\n" + record(HOSTILE, 4) + b"evil" + OK
    channel.sink(OK)
    channel.source(record(b"first", 2), b"ok", OK, after)
    channel.sink(OK, OK)  # the first file accepted and answered
    assert channel.observer.failure == "unexpected record"
    channel.observer.close()
    assert channel.seen == [Transfer("/srv/first", "upload", 2, sha(b"ok"), True, "scp")]
    assert channel.handed_over == (after, b"")


def test_a_record_line_cut_short_is_handed_over_and_content_under_way_is_reported() -> None:
    cut = Channel()
    cut.sink(OK)
    cut.source(record(HOSTILE, 5)[:12])
    cut.sink(OK)  # answers nothing
    assert cut.observer.failure == "an answer to nothing"
    assert cut.handed_over == (record(HOSTILE, 5)[:12], b"")
    under_way = Channel()
    under_way.sink(OK)
    under_way.source(record(b"big", HUGE))
    under_way.sink(OK)
    under_way.source(b"z" * 1000)
    under_way.sink(OK)  # answers nothing: the file is cut off, its 1000 bytes reported
    assert under_way.observer.failure == "an answer to nothing"
    under_way.observer.close()
    assert under_way.seen == [Transfer("/srv/big", "upload", 1000, sha(b"z" * 1000), False, "scp")]
    assert under_way.handed_over == (b"", b"")


def test_the_channel_ending_with_bytes_not_answered_stops_observing_and_hands_them_over() -> None:
    """The instance's scp may have written the file already; only its answers were not seen."""
    channel = Channel()
    channel.sink(OK)
    ahead = record(HOSTILE, 4) + b"data" + OK
    channel.source(ahead)
    channel.observer.close()
    assert channel.observer.failure == f"the channel ended with {len(ahead)} bytes of scp not answered"
    assert channel.handed_over == (ahead, b"")
    assert channel.seen == []
    download = Channel("download")
    download.sink(OK)
    download.source(record(b"notes", 5))
    download.observer.close()
    assert download.observer.failure is not None and download.handed_over == (b"", record(b"notes", 5))


def test_an_ordinary_ending_stops_nothing() -> None:
    channel = Channel("download")
    channel.sink(OK)
    channel.source(record(b"notes", 2), b"hi", OK)
    channel.sink(OK, OK)
    channel.source(b"\x01scp: /srv/missing: No such file or directory\n")  # nobody answers this
    channel.observer.close()
    assert channel.observer.failure is None and channel.handed_over == (b"", b"")
    assert channel.seen == [Transfer("/srv/notes", "download", 2, sha(b"hi"), True, "scp")]
    upload = Channel()
    upload.sink(OK)
    upload.source(b"T1700000000 0 1700000000 0\n")
    upload.sink(OK)
    upload.source(b"D0755 0 site\n")
    upload.sink(OK)
    upload.source(record(b"a", 1), b"1", OK)
    upload.sink(OK, OK)
    upload.source(b"E\n")
    upload.sink(OK)
    upload.observer.close()
    assert upload.observer.failure is None and upload.handed_over == (b"", b"")


def test_random_pipelining_and_stops_never_lose_a_file() -> None:
    """Files sent in random pieces, ahead of their answers or not; the sink answering what it has read, in
    random pieces; then a stop. Every file whose record crossed before the chunk the observer stopped on is
    reported, unless that record is among what is handed over; what is handed over is exactly the end of
    what crossed before that chunk."""
    rng = random.Random(11)
    for _ in range(400):
        direction = rng.choice(["upload", "download"])
        channel = Channel(direction)
        stream, files, answerable = b"", [], [0]  # where the sink can answer: ready, each record, each file
        for number in range(rng.randint(1, 5)):
            name = HOSTILE + b"-%d" % number
            content = rng.randbytes(rng.choice([0, 1, 40, MAX_LINE // 3]))
            stream += record(name, len(content))
            files.append((safe_path(name), len(stream)))
            stream += content + OK
            answerable += [files[-1][1], len(stream)]
        sent, answered, crossed = 0, 0, b""
        for _step in range(rng.randint(0, 40)):
            can_answer = sum(1 for end in answerable if end <= sent) - answered
            if channel.observer.failure is not None or not (sent < len(stream) or can_answer):
                break
            if sent < len(stream) and (not can_answer or rng.random() < 0.6):
                piece = stream[sent : sent + rng.choice([1, 9, 200, 5000])]
                sent += len(piece)
                channel.source(piece)
                if channel.observer.failure is None:  # the relay records the chunk it stopped on
                    crossed += piece
            else:
                count = rng.randint(1, min(3, can_answer))
                answered += count
                channel.sink(OK * count)
        if channel.observer.failure is None:
            if rng.random() < 0.5:
                channel.sink(b"\x01" + b"e" * MAX_LINE)  # the sink breaks the protocol
            else:
                channel.source(b"w" * (2 * MAX_LINE + 2))  # runs ahead, or is no record
        assert channel.observer.failure is not None
        channel.observer.close()
        client, instance = channel.handed_over
        handed, other = (client, instance) if direction == "upload" else (instance, client)
        assert other == b"" and crossed.endswith(handed), (crossed, handed)
        accounted = len(crossed) - len(handed)
        reported = {transfer.path.rsplit("/", 1)[-1] for transfer in channel.seen}
        assert [name for name, end in files if end <= accounted and name not in reported] == []
