"""The browser terminal's flow control (terminal.flow, terminal.session): a page that stops reading
cannot grow the web process; the shell on the instance is made to wait instead, nothing is dropped,
and the recording holds every byte once.

Real daphne serving the portal, the real worker and devcloud (a real sshd behind the data channel).
Before the fix daphne grew without bound for the first test: every frame went into Twisted's
write buffer at once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import connection

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services as request_services
from requests_app.models import Grant
from terminal import flow, frames, services, session_checks
from terminal import session as terminal_session
from terminal.models import TerminalSession
from tests.factories import make_membership, make_user
from tests.stack import Cloud, WorkerProcess, start_daphne, stop_process, wait_for
from tests.terminal.helpers import Screen, active_request, open_shell, session_cookie, ticketed_grant
from tests.terminal.storage_helpers import recording_bytes, use_s3_recordings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def daphne(
    worker: WorkerProcess, aws: Cloud, settings: Any, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    # Recordings in devcloud's S3: this test process reads what daphne recorded.
    bucket = use_s3_recordings(settings, aws.endpoint_url)
    env = {
        **worker.env,
        "PASSPORT_VAR_DIR": str(tmp_path / "var"),
        "PASSPORT_RECORDINGS_BUCKET": bucket,
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
    }
    process, port = start_daphne(env, tmp_path / "daphne.log")
    try:
        yield process, port
    finally:
        stop_process(process)


def _opened(prod: AwsAccount, name: str) -> tuple[Grant, str, str, int]:
    person, approver = make_user(name), make_user(f"{name}-approver")
    make_membership(person, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, person, approver)
    grant = Grant.objects.get(request=access_request)
    return grant, session_cookie(person), services.ticket_issue(user=person, grant=grant), access_request.pk


def _masked(payload: bytes, opcode: int = 1) -> bytes:
    """One client frame (masked, as RFC 6455 wants from a client)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = sock.recv(n - len(data))
            assert more, "closed"
            data += more
        return data

    first, second = exactly(2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", exactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", exactly(8))[0]
    return first & 0x0F, exactly(size)


def _lines(output: bytes) -> list[bytes]:
    """The lines of ``output`` without the shell's escape sequences (bracketed paste and the like)."""
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", output).replace(b"\r", b"").split(b"\n")


def _record(grant: Grant) -> TerminalSession:
    try:
        return wait_for(lambda: TerminalSession.objects.filter(grant=grant).first(), timeout=20, what="the record")
    finally:
        connection.close()


def test_a_page_that_never_reads_costs_daphne_a_bounded_amount(
    prod: AwsAccount, daphne: tuple[subprocess.Popen[bytes], int]
) -> None:
    process, port = daphne
    grant, cookie, ticket, _request_id = _opened(prod, "nora")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET /ws/terminal/{grant.pk}/?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    sock.settimeout(60)
    while True:  # read until the shell is logged in, then never again
        opcode, payload = _read_frame(sock)
        if opcode == 1 and json.loads(payload).get("type") == "ready":
            break
    sock.sendall(_masked(json.dumps({"v": 1, "type": "input", "data": "yes | head -c 200000000\r"}).encode()))
    time.sleep(1)
    before = _rss_mib(process.pid)
    time.sleep(25)
    after = _rss_mib(process.pid)
    print(f"daphne RSS: {before:.0f} MiB before, {after:.0f} MiB after")
    sock.close()
    assert after - before < 32, f"daphne grew by {after - before:.0f} MiB for one page that reads nothing"


def test_a_page_that_reads_and_acknowledges_gets_everything_in_order_and_so_does_the_recording(
    prod: AwsAccount, daphne: tuple[subprocess.Popen[bytes], int]
) -> None:
    _process, port = daphne
    grant, cookie, ticket, request_id = _opened(prod, "olga")
    seen: dict[str, Any] = {"output": b"", "envelopes": [], "held": [], "acking": False}

    async def drive() -> None:
        url = f"ws://127.0.0.1:{port}/ws/terminal/{grant.pk}/?ticket={ticket}"
        headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
        async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:

            async def read(predicate: Any, timeout: float, what: str = "") -> None:
                """Read until ``predicate`` holds (or, with no ``what``, for ``timeout`` seconds)."""
                deadline = time.monotonic() + timeout
                while not predicate():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        assert not what, f"no {what}: {seen['envelopes'][-5:]} {seen['output'][-300:]!r}"
                        return
                    try:
                        message = await asyncio.wait_for(ws.recv(), min(remaining, 1))
                    except TimeoutError:
                        continue
                    if isinstance(message, bytes):
                        seen["output"] += message
                        continue
                    envelope = json.loads(message)
                    seen["envelopes"].append(envelope)
                    if envelope["type"] == "mark":
                        if seen["acking"]:
                            await ws.send(json.dumps({"v": 1, "type": "ack", "id": envelope["id"]}))
                        else:
                            seen["held"].append(envelope["id"])

            await read(lambda: any(e["type"] == "ready" for e in seen["envelopes"]), 60, "ready")
            # Not acknowledging: the output stops near the limit, and the shell is made to wait.
            await ws.send(json.dumps({"v": 1, "type": "input", "data": "seq 1 2000000\r"}))
            await read(lambda: len(seen["output"]) > flow.MAX_UNACKED // 2, 60, "the first output")
            await read(lambda: False, 4)
            stalled = len(seen["output"])
            assert stalled <= flow.MAX_UNACKED + 64 * 1024, stalled
            # Input still reaches the shell while its output waits: Ctrl-C stops seq. An ack naming
            # a mark the server never sent counts for nothing.
            await ws.send(json.dumps({"v": 1, "type": "input", "data": "\x03"}))
            await ws.send(json.dumps({"v": 1, "type": "input", "data": "echo after$((6*7))\r"}))
            await ws.send(json.dumps({"v": 1, "type": "ack", "id": "not-a-mark"}))
            await read(lambda: False, 3)
            assert len(seen["output"]) == stalled
            seen["acking"] = True
            for mark in seen["held"]:
                await ws.send(json.dumps({"v": 1, "type": "ack", "id": mark}))
            await read(lambda: b"after42" in seen["output"], 120, "the echo after Ctrl-C")
            # Then a lot, acknowledged as it comes: every line, in order.
            await ws.send(json.dumps({"v": 1, "type": "input", "data": "seq 1 400000; echo done$((6*7))\r"}))
            await read(lambda: b"done42" in seen["output"].split(b"after42")[-1], 120, "the second output")

    asyncio.run(drive())
    before, tail = seen["output"].split(b"after42")
    assert [int(line) for line in _lines(tail) if line.isdigit()] == list(range(1, 400001))
    # The first run was cut by Ctrl-C, but every line it printed arrived, in order, none twice.
    printed = [int(line) for line in _lines(before) if line.isdigit()]
    assert printed[:1] == [1] and printed == list(range(1, len(printed) + 1)), printed[-3:]

    record = _record(grant)
    wait_for(lambda: TerminalSession.objects.get(pk=record.pk).ended_at is not None, timeout=30, what="sealed")
    record.refresh_from_db()
    lines = recording_bytes(record).decode().splitlines()
    recorded = "".join(event[2] for event in map(json.loads, lines[1:]) if event[1] == "o")
    assert recorded.encode() == seen["output"]  # every byte sent, once, in order
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=request_id)
    assert ended.detail["recording_state"] == "complete"


def test_a_page_that_stays_behind_is_closed_with_a_reason(
    prod: AwsAccount, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process (the ASGI application itself), with a short limit: the output waits for an
    ack that never comes, and the terminal is closed, saying why, in the Logbook too."""
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(session_checks, "STALLED_SECONDS", 2.0)
    _alice, access_request, grant, cookie, ticket = ticketed_grant(prod)

    async def session() -> Screen:
        screen = await open_shell(grant.pk, ticket, cookie)
        await screen.comm.send_to(text_data=json.dumps({"v": 1, "type": "input", "data": "seq 1 2000000\r"}))
        await screen.until(lambda s: s.closed_code is not None, timeout=30, what="the close")
        await screen.comm.wait(timeout=15)
        return screen

    screen = async_to_sync(session)()
    assert screen.closed_code == frames.CLOSE_NOT_READING
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": session_checks.NOT_READING}
    assert len(screen.output) < 1024 * 1024
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="sealed"
    )
    assert record.end_reason == session_checks.NOT_READING
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert session_checks.NOT_READING in str(ended.detail)


def test_output_read_from_the_shell_once_the_terminal_closes_is_recorded(
    prod: AwsAccount, settings: Any, tmp_path: Path
) -> None:
    """In this process: the page stops acknowledging, so one read of the shell's output (at most
    8 KiB) waits to be sent, and the rest of what the shell printed waits, read by nobody, in the
    portal's SSH channel; the request completes meanwhile. None of it is sent, but it is the shell's
    output: the recording holds everything the page got, then those bytes, to the last line printed."""
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, access_request, grant, cookie, ticket = ticketed_grant(prod)
    # About 1.3 MB with the pty's CRs: past MAX_UNACKED, and the rest within the SSH channel's window
    # (2 MiB), so the shell finishes and everything it printed reaches the portal.
    last = 180000

    async def session() -> Screen:
        screen = await open_shell(grant.pk, ticket, cookie)
        command = f"seq 1 {last}; echo done$((6*7))\r"
        await screen.comm.send_to(text_data=json.dumps({"v": 1, "type": "input", "data": command}))
        await screen.until(lambda s: len(s.output) > flow.MAX_UNACKED // 2, timeout=60, what="the first output")
        # Until the output stops: the next read waits for an ack. (Not by a receive that times out:
        # the communicator would cancel the application.)
        while not await screen.comm.receive_nothing(timeout=2):
            heard = len(screen.output) + len(screen.messages)
            await screen.until(lambda s, heard=heard: len(s.output) + len(s.messages) > heard, timeout=5, what="more")
        await asyncio.sleep(2)  # the rest of seq's output on its way to the portal's SSH channel
        await database_sync_to_async(request_services.access_request_complete)(
            access_request=access_request, actor=alice
        )
        await screen.until(lambda s: s.closed_code is not None, timeout=15, what="the close after completion")
        await screen.comm.disconnect(code=4000, timeout=15)
        return screen

    screen = async_to_sync(session)()
    assert len(screen.output) <= flow.MAX_UNACKED + 64 * 1024
    assert b"done42" not in screen.output
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="sealed"
    )
    lines = recording_bytes(record).decode().splitlines()
    recorded = "".join(event[2] for event in map(json.loads, lines[1:]) if event[1] == "o").encode()
    assert recorded.startswith(screen.output), (len(recorded), len(screen.output))
    assert len(recorded) > len(screen.output) + 8 * 1024, (len(recorded), len(screen.output))
    printed = _lines(recorded)
    assert [int(line) for line in printed if line.isdigit()] == list(range(1, last + 1))
    assert b"done42" in printed
    assert record.bytes_out == len(recorded)


def _recorded(record: TerminalSession, code: str) -> str:
    """The recording's ``code`` events (``o`` output, ``i`` input), joined."""
    lines = recording_bytes(record).decode().splitlines()
    return "".join(event[2] for event in map(json.loads, lines[1:]) if event[1] == code)


def test_input_the_shell_does_not_read_costs_daphne_a_bounded_amount_and_closes_the_terminal(
    prod: AwsAccount, daphne: tuple[subprocess.Popen[bytes], int]
) -> None:
    """A client that goes on sending input (48 MiB, in frames the terminal accepts, at about 6 MB/s)
    to a shell that reads none, never waiting for its input to be taken (terminal.flow): the web
    process holds a bounded amount of it, and the terminal is closed saying why, in the Logbook too. What reached
    the shell is recorded, and the recording is sealed complete. Before the fix daphne held it all
    (asyncssh kept every byte the instance's SSH window did not take), and the terminal stayed open."""
    process, port = daphne
    grant, cookie, ticket, request_id = _opened(prod, "pia")
    piece = (b"y" * 1023 + b"\n") * 64  # 64 KiB: the largest frame the terminal takes
    seen: dict[str, Any] = {"envelopes": [], "sent": 0, "rss": []}

    async def drive() -> None:
        url = f"ws://127.0.0.1:{port}/ws/terminal/{grant.pk}/?ticket={ticket}"
        headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
        async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:

            async def listen() -> None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for message in ws:
                        if isinstance(message, str):
                            seen["envelopes"].append(json.loads(message))
                seen["code"] = ws.close_code

            listening = asyncio.create_task(listen())
            deadline = time.monotonic() + 60
            while not any(e["type"] == "ready" for e in seen["envelopes"]):
                assert time.monotonic() < deadline, f"no ready: {seen['envelopes']}"
                await asyncio.sleep(0.1)
            # A foreground program that never reads its terminal: the pty fills, then sshd reads no more.
            await ws.send(json.dumps({"v": 1, "type": "input", "data": "stty raw -echo; sleep 600\r"}))
            await asyncio.sleep(5)  # its echo stored as the first chunk: the upload thread is going
            seen["rss"].append(_rss_mib(process.pid))
            with contextlib.suppress(websockets.ConnectionClosed):
                for _ in range(768):
                    await ws.send(piece)
                    seen["sent"] += len(piece)
                    # About 6 MB/s, as over a network: daphne queues every frame it reads for the
                    # terminal, and over loopback would read them faster than any consumer takes them.
                    await asyncio.sleep(0.01)
            # Measured as the client stops: the terminal's ending (sealing, its transcript) costs the
            # process memory of its own, and is not what this measures.
            seen["rss"].append(_rss_mib(process.pid))
            # The close, if it comes (not before the fix: the shell was left waiting with it all).
            if not (await asyncio.wait({listening}, timeout=30))[0]:
                listening.cancel()

    asyncio.run(drive())
    before, after = seen["rss"]
    print(f"daphne RSS: {before:.0f} MiB before, {after:.0f} MiB after {seen['sent'] >> 20} MiB of input")
    assert after - before < 16, f"daphne grew by {after - before:.0f} MiB holding input the shell does not read"
    assert seen.get("code") == frames.CLOSE_INPUT_NOT_TAKEN, seen.get("code")
    closed = [e for e in seen["envelopes"] if e["type"] == "closed"]
    assert closed == [{"v": 1, "type": "closed", "reason": terminal_session.INPUT_NOT_TAKEN}]
    assert seen["sent"] < 16 * 1024 * 1024  # refused long before the client was done

    record = _record(grant)
    wait_for(lambda: TerminalSession.objects.get(pk=record.pk).ended_at is not None, timeout=30, what="sealed")
    record.refresh_from_db()
    assert record.end_reason == terminal_session.INPUT_NOT_TAKEN
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=request_id)
    assert ended.detail["recording_state"] == "complete"
    assert terminal_session.INPUT_NOT_TAKEN in str(ended.detail)
    # What was written to the shell is recorded once, in order: the command, then whole pieces of input;
    # at most INPUT_MAX_UNTAKEN past what the server last said the instance had taken.
    recorded = _recorded(record, "i").encode()
    taken = max(e["bytes"] for e in seen["envelopes"] if e["type"] == "taken")
    assert record.bytes_in == len(recorded) <= taken + flow.INPUT_MAX_UNTAKEN
    assert recorded.startswith(b"stty raw -echo; sleep 600\r")
    assert recorded.count(b"\n") == (len(recorded) - len(b"stty raw -echo; sleep 600\r")) // 1024


def test_a_paste_larger_than_the_input_window_waits_in_the_page_and_reaches_a_slow_reader_whole(
    prod: AwsAccount, daphne: tuple[subprocess.Popen[bytes], int]
) -> None:
    """A client keeping to the input window as the page does (static/terminal/terminal.js): 6 MiB pasted
    into a program that reads nothing for a few seconds, then all of it. The paste waits in the client
    meanwhile (nothing is taken), then goes on as the instance reads: every byte arrives, in order, the
    terminal is not closed, and the recording holds the input once."""
    _process, port = daphne
    grant, cookie, ticket, request_id = _opened(prod, "quinn")
    paste = "".join(f"{number:07d}\n" for number in range(6 * 1024 * 1024 // 8))
    command = f"stty raw -echo; sleep 4; head -c {len(paste)} | sha256sum; stty sane; echo done$((6*7))\r"
    seen: dict[str, Any] = {"output": b"", "envelopes": [], "taken": 0, "stalls": []}

    async def drive() -> None:
        url = f"ws://127.0.0.1:{port}/ws/terminal/{grant.pk}/?ticket={ticket}"
        headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
        async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
            more = asyncio.Event()

            async def listen() -> None:
                async for message in ws:
                    if isinstance(message, bytes):
                        seen["output"] += message
                        continue
                    envelope = json.loads(message)
                    seen["envelopes"].append(envelope)
                    if envelope["type"] == "mark":
                        await ws.send(json.dumps({"v": 1, "type": "ack", "id": envelope["id"]}))
                    elif envelope["type"] == "taken":
                        seen["taken"] = max(seen["taken"], envelope["bytes"])
                        more.set()

            listening = asyncio.create_task(listen())
            deadline = time.monotonic() + 60
            while not any(e["type"] == "ready" for e in seen["envelopes"]):
                assert time.monotonic() < deadline, f"no ready: {seen['envelopes']}"
                await asyncio.sleep(0.1)
            await ws.send(json.dumps({"v": 1, "type": "input", "data": command}))
            sent = len(command)
            await asyncio.sleep(1)
            for start in range(0, len(paste), 4096):
                piece = paste[start : start + 4096]
                while sent - seen["taken"] + len(piece) > flow.INPUT_WINDOW:
                    more.clear()
                    waited = time.monotonic()
                    await asyncio.wait_for(more.wait(), 60)
                    seen["stalls"].append(time.monotonic() - waited)
                await ws.send(json.dumps({"v": 1, "type": "input", "data": piece}))
                sent += len(piece)
            deadline = time.monotonic() + 120
            while b"done42" not in seen["output"]:
                assert time.monotonic() < deadline, f"no done: {seen['output'][-300:]!r}"
                assert not listening.done(), seen["envelopes"][-3:]
                await asyncio.sleep(0.2)
            listening.cancel()

    asyncio.run(drive())
    digest = hashlib.sha256(paste.encode()).hexdigest()
    assert f"{digest}  -".encode() in seen["output"], seen["output"][-300:]
    assert not any(e["type"] == "closed" for e in seen["envelopes"])
    # It waited (the program slept with a full window), then went on.
    assert max(seen["stalls"]) > 2, seen["stalls"]

    record = _record(grant)
    wait_for(lambda: TerminalSession.objects.get(pk=record.pk).ended_at is not None, timeout=30, what="sealed")
    record.refresh_from_db()
    assert _recorded(record, "i") == command + paste
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=request_id)
    assert ended.detail["recording_state"] == "complete"
