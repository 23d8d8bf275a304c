"""A password typed at a prompt that does not echo is not in the recording itself (terminal.transcript.withhold):
a real shell on devcloud's web-1 through terminal.session.ShellSession, recorded to the S3 recordings
storage, sealed, read back as the player and the download read it, and verified as the daily pass does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal.models import RecordingState, TerminalSession
from terminal.session import ShellSession
from terminal.transcript.echo import NOT_SHOWN
from tests.stack import Cloud
from tests.terminal.helpers import ListBrowser, ready_grant, shell_logged_in, shell_session
from tests.terminal.storage_helpers import recording_bytes, use_s3_recordings
from tests.terminal.test_recording_tamper import _verify

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]

SECRET = "hunter2-secret"
PROMPT = "[sudo] password for rs-x: "


@pytest.fixture
def bucket(aws: Cloud, settings: Any, tmp_path: Path) -> str:
    settings.MEDIA_ROOT = tmp_path / "media"
    return use_s3_recordings(settings, aws.endpoint_url)


async def _send(session: ShellSession, data: str) -> None:
    await session.receive_text(json.dumps({"v": 1, "type": "input", "data": data}))


async def _set_up(session: ShellSession, browser: ListBrowser) -> None:
    await shell_logged_in(session, browser)
    await _send(session, "bind 'set bell-style none'; PS1='$ '; echo setup-$((1+1))\r")
    await browser.until(lambda b: b"setup-2" in b.output, timeout=20, what="the setup")


def _events(record: TerminalSession) -> list[list[Any]]:
    """The stored asciicast's events, read back from storage as the product reads it."""
    lines = recording_bytes(record).decode("utf-8").splitlines()
    assert json.loads(lines[0])["version"] == 2
    return [json.loads(line) for line in lines[1:]]


def _typed(events: list[list[Any]]) -> str:
    return "".join(data for _, code, data in events if code == "i")


def _ended(record: TerminalSession) -> dict[str, Any]:
    entry = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=record.pk)
    return dict(entry.detail)


def _played(record: TerminalSession, viewer: Any) -> bytes:
    """The player page and the cast it plays (served only when it matches the sealed digest)."""
    client = Client()
    client.force_login(viewer)
    assert client.get(reverse("terminal:recording", args=[record.pk])).status_code == 200
    response = client.get(reverse("terminal:recording-cast", args=[record.pk]))
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)  # type: ignore[attr-defined]


def test_a_password_at_a_sudo_prompt_is_not_in_the_recording_and_the_seal_verifies(
    prod: AwsAccount, aws: Cloud, bucket: str
) -> None:
    alice, approver, _request, grant = ready_grant(prod)
    browser = ListBrowser()
    session = shell_session(alice, grant, browser)

    async def drive() -> None:
        await _set_up(session, browser)
        await _send(session, f"read -rsp '{PROMPT}' PW; echo; echo got-${{#PW}}-$((2*3))\r")
        await browser.until(lambda b: b.output.endswith(PROMPT.encode()), timeout=20, what="the prompt")
        for key in SECRET:  # a key at a time, as a person types
            await _send(session, key)
        await _send(session, "\r")
        await browser.until(lambda b: b"got-14-6" in b.output, timeout=20, what="the read")
        await _send(session, "echo after-$((3*3))\r")
        await browser.until(lambda b: b"after-9\r\n" in b.output, timeout=20, what="the next command")
        await session.end("done")

    async_to_sync(drive)()
    record = TerminalSession.objects.get(grant=grant)
    assert record.recording_state == RecordingState.COMPLETE
    stored = recording_bytes(record)
    events = _events(record)
    assert SECRET.encode() not in stored and "hunter2" not in _typed(events)
    # The keys' place: one "w" event saying how many bytes were withheld, then the Enter, kept.
    withheld = [event for event in events if event[1] == "w"]
    assert [event[2] for event in withheld] == [str(len(SECRET))]
    typed = _typed(events)
    assert "echo got-${#PW}-$((2*3))\r\recho after-$((3*3))\r" in typed
    times = [event[0] for event in events]
    assert times == sorted(times)  # still in time order

    detail = _ended(record)
    assert (detail["input_withheld_bytes"], detail["input_withheld_lines"]) == (len(SECRET), 1)
    assert detail["bytes_in"] == len(typed.encode()) + len(SECRET)
    assert detail["recording_sha256"] == record.recording_sha256
    assert NOT_SHOWN in record.transcript_input and SECRET not in record.transcript_input
    assert "echo after-$((3*3))" in [label for _, label in record.transcript_index["commands"]]

    assert _played(record, approver) == stored
    code, said = _verify()
    assert code == 0, said


def test_keys_the_host_echoes_at_a_password_prompt_are_kept(prod: AwsAccount, aws: Cloud, bucket: str) -> None:
    """``read -p`` without ``-s``: the prompt names a password, but the host shows what is typed. Not a
    secret to it, so the recording keeps the keys, each at its own time."""
    alice, approver, _request, grant = ready_grant(prod)
    browser = ListBrowser()
    session = shell_session(alice, grant, browser)
    shown = "not-secret-at-all"

    async def drive() -> None:
        await _set_up(session, browser)
        await _send(session, "read -rp 'Password: ' PW; echo got-${#PW}-$((2*4))\r")
        await browser.until(lambda b: b.output.endswith(b"Password: "), timeout=20, what="the prompt")
        for key in shown:
            await _send(session, key)
        await _send(session, "\r")
        await browser.until(lambda b: b"got-17-8" in b.output, timeout=20, what="the read")
        await session.end("done")

    async_to_sync(drive)()
    record = TerminalSession.objects.get(grant=grant)
    events = _events(record)
    assert not [event for event in events if event[1] == "w"]
    keys = [event for event in events if event[1] == "i" and event[2] in shown]
    assert "".join(event[2] for event in keys) == shown
    assert [event[0] for event in events] == sorted(event[0] for event in events)
    detail = _ended(record)
    assert "input_withheld_bytes" not in detail
    assert shown in record.transcript_input
    _played(record, approver)


def test_a_fake_password_prompt_hides_no_more_than_the_transcript_rule_allows(
    prod: AwsAccount, aws: Cloud, bucket: str
) -> None:
    """``PS1='Password: '`` with echo off: every command is typed at a "prompt for a secret" that does not
    echo. Three lines at one prompt are withheld (sudo asks three times), the ones after are kept."""
    alice, approver, _request, grant = ready_grant(prod)
    browser = ListBrowser()
    session = shell_session(alice, grant, browser)
    commands = [f"echo fake-{number}-$(({number}*11))" for number in range(1, 6)]

    async def drive() -> None:
        await _set_up(session, browser)
        await _send(session, "stty -echo; PS1='Password: '\r")
        await browser.until(lambda b: b.output.endswith(b"Password: "), timeout=20, what="the fake prompt")
        for number, command in enumerate(commands, start=1):
            for key in command:
                await _send(session, key)
            await _send(session, "\r")
            answer = f"fake-{number}-{number * 11}\r\n".encode()
            await browser.until(
                lambda b, answer=answer: answer in b.output and b.output.endswith(b"Password: "),
                timeout=20,
                what="the command",
            )
        await _send(session, "stty echo\r")
        await session.end("done")

    async_to_sync(drive)()
    record = TerminalSession.objects.get(grant=grant)
    events = _events(record)
    typed = _typed(events)
    assert [event[2] for event in events if event[1] == "w"] == [str(len(command)) for command in commands[:3]]
    assert all(command not in typed for command in commands[:3])
    assert all(command in typed for command in commands[3:])
    detail = _ended(record)
    assert detail["input_withheld_lines"] == 3
    assert detail["input_withheld_bytes"] == sum(len(command) for command in commands[:3])
    # The transcript applies the same rule to what the recording holds: the same three lines not shown.
    assert record.transcript_input.count(NOT_SHOWN) == 3
    assert all(command in record.transcript_input for command in commands[3:])
    _played(record, approver)
