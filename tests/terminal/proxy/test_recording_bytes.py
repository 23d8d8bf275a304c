"""What a CLI channel without a pty carries is recorded byte for byte, whether it is a command (exec) or a
shell reading its script from stdin (``ssh -T web-1 < script``, ansible's ``sh`` with pipelining): a binary
the script writes out and runs (``head -c N > /tmp/x``) is on record as it ran, with the byte counts and
SHA-256 of the input and output in ``terminal.ended``. A terminal (a pty) keeps its text as shown."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal.models import RecordingState, SessionKind, TerminalSession
from terminal.proxy.recording import ChannelRecording
from terminal.recorder import recording_kept
from terminal.recording import raw_streams
from tests.conftest import World
from tests.terminal.storage_helpers import recording_bytes
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.usefixtures("live_db")

STDIN = b"head -c 8 > /tmp/x; chmod +x /tmp/x; /tmp/x\n" + bytes([0x7F, 0x45, 0x4C, 0x46, 0xFF, 0xFE, 0x80, 0x81])
STDOUT = b"\x7fELF\xff\xfe\x80\x81 and \xc3 cut\n"


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


def recorded(world: World, *, kind: str, term: str | None, late: bytes = b"") -> TerminalSession:
    """A channel's recording given STDIN and STDOUT, then sealed; ``late``: output given once the
    ending has begun (while it stops the live feed, before it seals), with input the client typed
    then (the relay closed the instance's channel before it began: that input never reaches it)."""
    grant = Grant.objects.select_related("instance", "request").get(pk=make_active_grant(world).pk)

    async def notify(message: str) -> None: ...

    async def moderation(state: str) -> None: ...

    async def run() -> TerminalSession:
        recording = ChannelRecording(
            user=world.requester, grant=grant, ssm_session_id="s-1", kind=kind,
            command="sh" if kind == SessionKind.EXEC else "", cols=80, rows=24,
            notify=notify, stop=lambda reason: None, moderation=moderation, term=term,
        )  # fmt: skip
        assert await recording.begin()
        for start in range(0, len(STDIN), 5):  # characters split across reads
            recording.input(STDIN[start : start + 5])
        recording.output(STDOUT)
        finishing = asyncio.ensure_future(recording.finish("The session ended.", exit_status=0))
        if late:
            await asyncio.sleep(0)  # the ending begins, and waits for the live feed to stop
            recording.output(late)
            recording.input(b"typed as it closed\n")
            assert not finishing.done()
        await finishing
        assert recording.record is not None
        return recording.record

    return TerminalSession.objects.get(pk=asyncio.run(run()).pk)


def kept_streams(session: TerminalSession) -> dict[str, bytes]:
    kept = recording_kept(session)
    assert kept.chunks and not kept.problem, kept.problem
    return raw_streams(json.loads(line) for line in recording_bytes(session).decode().splitlines()[1:] if line)


@pytest.mark.parametrize("kind", [SessionKind.EXEC, SessionKind.SHELL])
def test_without_a_pty_stdin_and_output_are_kept_byte_for_byte_and_sealed_by_digest(world: World, kind: str) -> None:
    session = recorded(world, kind=kind, term=None)
    assert kept_streams(session) == {"i": STDIN, "o": STDOUT}
    assert session.recording_state == RecordingState.COMPLETE and not session.recording_note
    detail = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=session.pk).detail
    assert detail["input_bytes"] == len(STDIN) and detail["input_sha256"] == hashlib.sha256(STDIN).hexdigest()
    assert detail["output_bytes"] == len(STDOUT) and detail["output_sha256"] == hashlib.sha256(STDOUT).hexdigest()
    assert "recording_lossy" not in detail


def test_a_terminal_keeps_its_text_as_shown_and_says_bytes_were_replaced(world: World) -> None:
    session = recorded(world, kind=SessionKind.SHELL, term="xterm-256color")
    streams = kept_streams(session)
    assert streams["i"] != STDIN and "\ufffd".encode() in streams["i"]
    detail = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=session.pk).detail
    assert detail["recording_lossy"] is True and "input_sha256" not in detail


@pytest.mark.parametrize("kind", [SessionKind.EXEC, SessionKind.SHELL])
def test_output_arriving_once_the_ending_began_is_recorded_and_in_the_digest(world: World, kind: str) -> None:
    """The relay closes the instance's channel, then seals; asyncssh still hands on what the instance
    sent before it saw the close, while the ending stops the live feed. Those bytes are the
    instance's output: in the recording, the byte count and the digest alike. Input the client sent
    then never reaches the instance, and is in none of them."""
    late = b"printed as the channel closed\n"
    session = recorded(world, kind=kind, term=None, late=late)
    assert kept_streams(session) == {"i": STDIN, "o": STDOUT + late}
    assert session.bytes_out == len(STDOUT + late)
    detail = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=session.pk).detail
    assert detail["output_bytes"] == len(STDOUT + late)
    assert detail["output_sha256"] == hashlib.sha256(STDOUT + late).hexdigest()
    assert session.bytes_in == detail["input_bytes"] == len(STDIN)
    assert detail["input_sha256"] == hashlib.sha256(STDIN).hexdigest()
