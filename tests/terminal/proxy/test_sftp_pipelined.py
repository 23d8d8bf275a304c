"""sftp requests sent ahead of their answers through the proxy, against the instance's real sftp-server.

OpenSSH's sftp-server answers in order and numbers its handles 0, 1, ... (the lowest free), so a client
can open a file and write to it, read it, copy into it or close it in one go, naming the handle before
the answer comes. Each such file is still in the Logbook with its size and digest; what the observer
cannot follow (a request id used twice at once, requests still waiting for their handle when it stops)
is recorded byte for byte instead.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from audit.models import LogbookEntry
from terminal.models import RecordingState, TerminalSession
from terminal.recorder import recording_read
from terminal.recording import raw_streams
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy import sftp_wire as wire
from tests.terminal.proxy.conftest import Proxied, proxy_entries

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

H0, H1 = wire.server_handle(0), wire.server_handle(1)


def sftp_channel(proxied: Proxied) -> wire.WireChannel:
    channel = wire.WireChannel(["ssh", "-F", proxied.config, "-oBatchMode=yes", "-s", "web-1", "sftp"], proxied.cli.env)
    channel.send(wire.init())
    [version] = channel.replies(1)
    assert version[4] == 2, version
    return channel


def all_sealed(request_id: int) -> None:
    wait_for(
        lambda: not TerminalSession.objects.filter(grant__request_id=request_id, ended_at__isnull=True).exists(),
        what="every session sealed",
    )


def transfers(proxied: Proxied, name: str) -> list[dict[str, Any]]:
    entries = LogbookEntry.objects.filter(action="file.transferred", request_id=proxied.access_request.pk)
    return [dict(entry.detail) for entry in entries.order_by("id") if entry.detail["path"] == name]


def on_record(direction: str, name: str, content: bytes) -> dict[str, Any]:
    return {"direction": direction, "size": len(content), "sha256": hashlib.sha256(content).hexdigest(),
            "complete": True, "path": name}  # fmt: skip


def shown(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry[key] for key in ("direction", "size", "sha256", "complete", "path")}


def sftp_records(proxied: Proxied) -> list[TerminalSession]:
    return list(TerminalSession.objects.filter(grant=proxied.grant, command="subsystem sftp").order_by("id"))


def input_kept(record: TerminalSession, settings: Any, tmp_path: Path) -> bytes:
    settings.MEDIA_ROOT = tmp_path / "var" / "media"  # the daphne's recordings (PASSPORT_VAR_DIR)
    kept, chunks = recording_read(record)
    data = b"".join(chunks)  # a chunk at a time: kept is whole once they are read
    assert kept.chunks and not kept.problem, kept.problem
    return raw_streams([json.loads(line) for line in data.decode().splitlines()[1:]])["i"]


def test_writes_named_by_handle_before_the_open_is_answered_are_each_in_the_logbook(proxied: Proxied) -> None:
    assert proxied.ssh("printf 'original\\n' > appended.txt; printf 'old content\\n' > emptied.txt").returncode == 0
    appended, replaced = b"echo HIDDEN-$((6*7)) >> ~/.bashrc\n", b"replaced by a pipelined write\n"
    channel = sftp_channel(proxied)
    channel.send(
        wire.open_(1, b"appended.txt", wire.FX_WRITE | wire.FX_APPEND),
        wire.open_(2, b"emptied.txt", wire.FX_WRITE | wire.FX_TRUNC),
        wire.write(3, H0, 0, appended),
        wire.write(4, H1, 0, replaced),
        wire.close(5, H0),
        wire.close(6, H1),
    )
    answers = channel.replies(6)
    channel.end()
    assert [answer[4] for answer in answers] == [102, 102, 101, 101, 101, 101]
    assert proxied.ssh("cat appended.txt emptied.txt").stdout == b"original\n" + appended + replaced
    all_sealed(proxied.access_request.pk)
    proxy_entries(proxied.access_request.pk, "file.transferred", count=2)
    assert [shown(entry) for entry in transfers(proxied, "appended.txt")] == [
        on_record("upload", "appended.txt", appended)
    ]
    assert [shown(entry) for entry in transfers(proxied, "emptied.txt")] == [
        on_record("upload", "emptied.txt", replaced)
    ]


def test_reads_and_a_copy_named_by_handle_before_the_open_is_answered_are_in_the_logbook(proxied: Proxied) -> None:
    assert proxied.ssh("seq 1 20000 > secret.txt").returncode == 0
    secret = proxied.ssh("cat secret.txt").stdout
    assert len(secret) == 108_894
    download = sftp_channel(proxied)
    download.send(
        wire.open_(1, b"secret.txt", wire.FX_READ),
        *(wire.read(2 + n, H0, n * 32768, 32768) for n in range(4)),  # the last one short
        wire.read(6, H0, len(secret), 32768),  # EOF
        wire.close(7, H0),
    )
    answers = download.replies(7)
    download.end()
    assert [answer[4] for answer in answers] == [102, 103, 103, 103, 103, 101, 101]
    copy = sftp_channel(proxied)
    copy.send(
        wire.open_(1, b"secret.txt", wire.FX_READ),
        wire.open_(2, b"copied.txt", wire.WRITE_NEW),
        wire.copy_data(3, H0, H1),
        wire.close(4, H0),
        wire.close(5, H1),
    )
    answers = copy.replies(5)
    copy.end()
    assert [answer[4] for answer in answers] == [102, 102, 101, 101, 101]
    assert proxied.ssh("cat copied.txt").stdout == secret
    all_sealed(proxied.access_request.pk)
    proxy_entries(proxied.access_request.pk, "file.transferred", count=1)
    assert [shown(entry) for entry in transfers(proxied, "secret.txt")] == [on_record("download", "secret.txt", secret)]
    [copied] = proxy_entries(proxied.access_request.pk, "file.changed", count=1, operation="copy-data")
    assert (copied.detail["path"], copied.detail["target"], copied.detail["status"]) == (
        "copied.txt",
        "secret.txt",
        "ok",
    )


def test_a_request_id_used_twice_at_once_stops_observing_and_the_rest_is_recorded(
    proxied: Proxied, settings: Any, tmp_path: Path
) -> None:
    """The second request would take the first one's answer: the OPEN's handle would be lost, and the
    writes to it taken for writes to nothing."""
    payload = b"echo HIDDEN-$((6*7)) > ~/proof\n"
    channel = sftp_channel(proxied)
    channel.send(wire.open_(1, b"victim.txt", wire.WRITE_NEW), wire.remove(1, b"never-there.txt"))
    assert [answer[4] for answer in channel.replies(2)] == [102, 101]
    written = wire.write(2, H0, 0, payload)
    channel.send(written, wire.close(3, H0))
    channel.replies(2)
    channel.end()
    assert proxied.ssh("cat victim.txt").stdout == payload
    request_id = proxied.access_request.pk
    all_sealed(request_id)
    [record] = sftp_records(proxied)
    assert record.recording_state == RecordingState.PARTIAL
    [note] = proxy_entries(request_id, "transfer.unobserved", count=1)
    assert note.detail["reason"] == "request id 1 used again while in flight", note.detail
    assert written in input_kept(record, settings, tmp_path)
    assert not LogbookEntry.objects.filter(action="file.changed", request_id=request_id, detail__status="ok")


def test_requests_waiting_for_their_handle_are_recorded_when_observing_stops_or_the_channel_ends(
    proxied: Proxied, settings: Any, tmp_path: Path
) -> None:
    """Opening a FIFO keeps the sftp-server from answering until something writes to it: the requests
    sent after that OPEN wait in the observer for their handle."""
    assert proxied.ssh("mkfifo fifo; printf 'kept\\n' > victim.txt").returncode == 0
    payloads = [b"first: the observer stops\n", b"second: the channel ends\n"]
    writes = [wire.write(3, H1, 0, payload) for payload in payloads]
    for number, written in enumerate(writes):
        channel = sftp_channel(proxied)
        channel.send(
            wire.open_(1, b"fifo", wire.FX_READ),  # the server waits here
            wire.open_(2, b"victim.txt", wire.FX_WRITE | wire.FX_APPEND),
            written,
            wire.close(4, H1),
        )
        time.sleep(1)  # those reach the observer on their own
        if number == 0:
            channel.send(wire.realpath(2, b"."))  # id 2 is the OPEN still unanswered
            time.sleep(1)
            assert proxied.ssh("printf x > fifo").returncode == 0  # the server goes on
            assert [answer[4] for answer in channel.replies(5)] == [102, 102, 101, 101, 104]
            channel.end()
        else:
            channel.child.kill()  # the client goes away
            channel.end()
            proxied.ssh("timeout 10 sh -c 'printf x > fifo'")  # the server goes on, if it is still there
    assert proxied.ssh("cat victim.txt").stdout.startswith(b"kept\n" + payloads[0])
    request_id = proxied.access_request.pk
    all_sealed(request_id)
    stopped, ended = sftp_records(proxied)
    reasons = [entry.detail["reason"] for entry in proxy_entries(request_id, "transfer.unobserved", count=2)]
    assert reasons == [
        "request id 2 used again while in flight",
        "the channel ended with 2 requests waiting for a handle",
    ]
    for record, written in zip((stopped, ended), writes, strict=True):
        assert record.recording_state == RecordingState.PARTIAL
        assert written in input_kept(record, settings, tmp_path)
