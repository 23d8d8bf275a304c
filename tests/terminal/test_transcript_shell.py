"""A person cannot keep commands and their output out of the recordings search with an escape string
the terminal cancels: a real shell on devcloud's web-1, through terminal.session.ShellSession, sealed
and then searched and played as an approver does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from accounts.models import AwsAccount
from terminal.line_editor import TYPED_MARK
from terminal.models import TerminalSession
from terminal.transcript.echo import NOT_SHOWN
from tests.stack import Cloud
from tests.terminal.helpers import ListBrowser, ready_grant, shell_logged_in, shell_session

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def test_commands_after_a_cancelled_osc_are_searchable_and_marked(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, approver, _request, grant = ready_grant(prod)
    browser = ListBrowser()
    session = shell_session(alice, grant, browser)

    async def drive() -> None:
        await shell_logged_in(session, browser)
        # One line (it could as well come from a .bashrc copied with scp): every prompt now ends in
        # ESC ] CAN, an OSC string the terminal cancels at once.
        setup = (
            "bind 'set bell-style none'; bind 'set enable-bracketed-paste off'; "
            "TERM=dumb; PS1=$'$ \\001\\e]\\x18\\002'; echo setup-$((1+1))\r"
        )
        await session.receive_text(json.dumps({"v": 1, "type": "input", "data": setup}))
        await browser.until(lambda b: b"setup-2" in b.output, timeout=20, what="the setup")
        # Typed after ESC ], which readline takes as one unbound key and ignores.
        line = "\x1b]id; echo exfil-$((6*7)); cat /etc/hostname\r"
        await session.receive_text(json.dumps({"v": 1, "type": "input", "data": line}))
        await browser.until(lambda b: b"exfil-42" in b.output, timeout=20, what="the command's output")
        await session.end("done")

    async_to_sync(drive)()
    # What the person's terminal showed (xterm.js ends the OSC at CAN, as the player does).
    assert b"\x1b]\x18id; echo exfil-$((6*7))" in browser.output and b"exfil-42\r\n" in browser.output
    record = TerminalSession.objects.get(grant=grant)
    assert record.ended_at is not None
    # The command as echoed and its output, in what was printed; the command in what was typed.
    assert "$ id; echo exfil-$((6*7)); cat /etc/hostname\n" in record.transcript
    assert "\nexfil-42\n" in record.transcript
    # Typed after ESC ] (Alt-]), so marked: every key typed on the line follows it.
    typed = "id; echo exfil-$((6*7)); cat /etc/hostname"
    assert f"{typed}{TYPED_MARK}⟨M-]⟩{typed}\n" in record.transcript_input
    commands = [label for _, label in record.transcript_index["commands"]]
    assert f"{typed[:29]}…{TYPED_MARK}⟨M-]⟩{typed[:33]}…" in commands

    # The Recordings search finds it, on either side, and the player's markers name it.
    client = Client()
    client.force_login(approver)
    for text in ("exfil-42", "echo exfil-$((6*7))"):
        response = client.get(reverse("terminal:recordings"), {"q": text})
        assert [hit.session.pk for hit in response.context["hits"]] == [record.pk], text
    page = client.get(reverse("terminal:recording", args=[record.pk]))
    labels = [label for _, label in page.context["player_options"]["markers"]]
    assert f"{typed[:29]}…{TYPED_MARK}⟨M-]⟩{typed[:33]}…" in labels


HIDDEN = "echo hidden-$((20+3))-d25 > /tmp/hidden-d25"


def test_a_command_backspaced_at_the_start_of_its_line_is_searchable_and_marked(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    """The review's keys: the command, Left to the start of the line, Backspace four times as often
    (readline at the start of the line only rings the bell), Enter. Bash runs it, the person's terminal
    still shows it, and the recording's search and markers have it."""
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, approver, _request, grant = ready_grant(prod)
    browser = ListBrowser()
    session = shell_session(alice, grant, browser)

    async def send(data: str) -> None:
        await session.receive_text(json.dumps({"v": 1, "type": "input", "data": data}))

    async def drive() -> None:
        await shell_logged_in(session, browser)
        await send("bind 'set bell-style none'; PS1='$ '; echo setup-$((1+1))\r")
        await browser.until(lambda b: b"setup-2" in b.output, timeout=20, what="the setup")
        await send(HIDDEN)
        await browser.until(lambda b: HIDDEN.encode() in b.output, timeout=20, what="the echo")
        await send("\x1b[D" * len(HIDDEN))
        await browser.until(lambda b: b.output.endswith(b"\b" * 8), timeout=20, what="the cursor moved")
        await send("\x7f" * (4 * len(HIDDEN)) + "\r")
        await send("cat /tmp/hidden-d25\r")
        await browser.until(lambda b: b"hidden-23-d25\r\n" in b.output, timeout=20, what="the command ran")
        await session.end("done")

    async_to_sync(drive)()
    assert f"$ {HIDDEN}".encode() in browser.output  # on the person's screen: BS only moves the cursor
    record = TerminalSession.objects.get(grant=grant)
    assert f"$ {HIDDEN}" in record.transcript
    assert f"\n{HIDDEN}{TYPED_MARK}{HIDDEN}⟨ESC[D⟩" in record.transcript_input
    client = Client()
    client.force_login(approver)
    response = client.get(reverse("terminal:recordings"), {"q": "hidden-$((20+3))"})
    assert [hit.session.pk for hit in response.context["hits"]] == [record.pk]
    page = client.get(reverse("terminal:recording", args=[record.pk]))
    labels = [label for _, label in page.context["player_options"]["markers"]]
    assert f"{HIDDEN[:29]}…{TYPED_MARK}{HIDDEN[:38]}…" in labels


SECRET = "Hunter2-Secret-e2e"


def test_a_password_typed_at_a_prompt_that_does_not_echo_is_neither_searchable_nor_marked(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    """``read -s`` turns the terminal's echo off, as sudo, su, ssh and mysql -p do for a password: the keys
    are recorded, the screen never shows them, and the transcript has a placeholder instead. The command
    before and after, echoed, are searchable and marked."""
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, approver, _request, grant = ready_grant(prod)
    browser = ListBrowser()
    session = shell_session(alice, grant, browser)

    async def send(data: str) -> None:
        await session.receive_text(json.dumps({"v": 1, "type": "input", "data": data}))

    async def drive() -> None:
        await shell_logged_in(session, browser)
        await send("bind 'set bell-style none'; PS1='$ '; echo setup-$((1+1))\r")
        await browser.until(lambda b: b"setup-2" in b.output, timeout=20, what="the setup")
        await send("read -rsp 'Password: ' PW; echo; echo got-${#PW}-$((2*3))\r")
        await browser.until(lambda b: b.output.endswith(b"Password: "), timeout=20, what="the prompt")
        for key in SECRET:  # typed a key at a time, as a person does
            await send(key)
        await send("\r")
        await browser.until(lambda b: b"got-18-6" in b.output, timeout=20, what="the read")
        await send("echo after-$((3*3))\r")
        await browser.until(lambda b: b"after-9\r\n" in b.output, timeout=20, what="the next command")
        await session.end("done")

    async_to_sync(drive)()
    assert SECRET.encode() not in browser.output  # the screen never showed it
    record = TerminalSession.objects.get(grant=grant)
    assert record.ended_at is not None
    assert SECRET not in record.transcript and SECRET not in record.transcript_input
    assert f"got-${{#PW}}-$((2*3))\n{NOT_SHOWN}\necho after-$((3*3))\n" in record.transcript_input
    commands = [label for _, label in record.transcript_index["commands"]]
    assert not any(SECRET in label or NOT_SHOWN in label for label in commands), commands
    assert "echo after-$((3*3))" in commands

    client = Client()
    client.force_login(approver)
    for text, found in ((SECRET, []), ("Hunter2", []), ("echo after-$((3*3))", [record.pk])):
        response = client.get(reverse("terminal:recordings"), {"q": text})
        assert [hit.session.pk for hit in response.context["hits"]] == found, text
