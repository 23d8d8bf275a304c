"""OpenSSH through the recording proxy on a pty (``ssh -tt web-1 cmd``): a password typed at a prompt that
does not echo is not in the recording, and the sealed input digest covers the input the recording holds
(terminal.transcript.withhold); a command without a pty keeps its input byte for byte."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from audit.models import LogbookEntry
from terminal.models import RecordingState, SessionKind, TerminalSession
from terminal.recorder import recording_kept
from terminal.recording import raw_streams
from terminal.transcript.echo import NOT_SHOWN
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied, _collect
from tests.terminal.storage_helpers import recording_bytes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

SECRET = b"hunter2-secret"
PROMPT = b"[sudo] password for rs-x: "


def test_a_password_typed_on_a_pty_is_not_recorded_and_the_input_digest_verifies(
    proxied: Proxied, settings: Any, tmp_path: Path
) -> None:
    command = f"read -rsp '{PROMPT.decode()}' PW; echo; echo got-${{#PW}}-$((2*5))"
    process = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-tt", "web-1", command],
        env=proxied.cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = bytearray(), bytearray()
    readers = [_collect(process.stdout, out), _collect(process.stderr, err)]
    try:
        wait_for(lambda: out.endswith(PROMPT), what="the prompt")
        assert process.stdin is not None
        process.stdin.write(SECRET + b"\r")  # after the prompt, as a person types it
        process.stdin.flush()
        wait_for(lambda: process.poll() is not None, timeout=30, what="ssh to end")
    finally:
        if process.poll() is None:
            process.kill()
        for reader in readers:
            reader.join(timeout=5)
    assert process.returncode == 0, bytes(err)
    assert b"got-14-10" in out and SECRET not in out

    record = wait_for(
        lambda: (
            TerminalSession.objects.filter(grant=proxied.grant, kind=SessionKind.EXEC, ended_at__isnull=False)
            .exclude(command="")
            .first()
        ),
        what="the sealed command",
    )
    assert record.recording_state == RecordingState.COMPLETE
    settings.MEDIA_ROOT = tmp_path / "var" / "media"  # the daphne's recordings (PASSPORT_VAR_DIR)
    stored = recording_bytes(record)
    assert SECRET not in stored
    events = [json.loads(line) for line in stored.decode().splitlines()[1:]]
    assert [event[2] for event in events if event[1] == "w"] == [str(len(SECRET))]
    typed = raw_streams(events)["i"]
    assert typed == b"\r"  # the Enter, kept; the keys before it withheld

    detail = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=record.pk).detail
    assert detail["input_bytes"] == len(SECRET) + 1 == len(typed) + detail["input_withheld_bytes"]
    assert detail["input_withheld_lines"] == 1
    assert detail["input_sha256"] == hashlib.sha256(typed).hexdigest()
    assert detail["output_sha256"] == hashlib.sha256(raw_streams(events)["o"]).hexdigest()
    # What is kept is what was sealed.
    kept = recording_kept(record)
    assert kept.sha256 == detail["recording_sha256"] == record.recording_sha256 and not kept.problem
    assert NOT_SHOWN in record.transcript_input


def test_a_commands_input_without_a_pty_is_kept_whole(proxied: Proxied) -> None:
    """No pty: no host turns an echo off, and its stdin is a stream (a script, a file; here what a script
    pipes to a ``sudo -S``), kept byte for byte and sealed by its digest, as before."""
    command = f"printf '%s' '{PROMPT.decode()}' >&2; read -r PW; echo got-${{#PW}}"
    process = subprocess.run(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-T", "web-1", command],
        env=proxied.cli.env, input=SECRET + b"\n", capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert process.returncode == 0 and b"got-14" in process.stdout, process.stderr
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=proxied.grant, command=command, ended_at__isnull=False).first(),
        what="the sealed command",
    )
    detail = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=record.pk).detail
    assert "input_withheld_bytes" not in detail
    assert detail["input_sha256"] == hashlib.sha256(SECRET + b"\n").hexdigest()
