"""The terminal type of a pty request becomes TERM on the instance: a value the shell can read and run
(``eval "${TERM#*;}"``) without it being in the recording. Only terminfo-like names pass, and the one
used is on record (``terminal.started``, the recording's header); others refuse the channel."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from audit.models import LogbookEntry, RefusalTally
from terminal.models import TerminalSession
from terminal.recorder import recording_read
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied, in_one_refusal_window

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

# TERM as sshd set it (bash sets TERM=dumb for itself when there is none).
SHOW_TERM = "tr '\\0' '\\n' < /proc/$$/environ | grep '^TERM=' || echo 'no TERM'; tty"


def ssh_tty(proxied: Proxied, term: str | None, command: str) -> subprocess.CompletedProcess[bytes]:
    env = {key: value for key, value in proxied.cli.env.items() if key != "TERM"}
    if term is not None:
        env["TERM"] = term
    return subprocess.run(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-tt", "web-1", command],
        env=env, capture_output=True, timeout=90, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def all_sealed(request_id: int) -> None:
    wait_for(
        lambda: not TerminalSession.objects.filter(grant__request_id=request_id, ended_at__isnull=True).exists(),
        what="every session sealed",
    )


def header_of(record: TerminalSession, settings: Any, tmp_path: Path) -> dict[str, Any]:
    settings.MEDIA_ROOT = tmp_path / "var" / "media"  # the daphne's recordings (PASSPORT_VAR_DIR)
    kept, chunks = recording_read(record)
    data = b"".join(chunks)  # a chunk at a time: kept is whole once they are read
    assert kept.chunks and not kept.problem, kept.problem
    return dict(json.loads(data.decode().splitlines()[0]))


def test_a_terminal_type_carrying_a_command_refuses_the_channel_and_is_on_record(proxied: Proxied) -> None:
    hidden = "echo HIDDEN-$((6*7)) > ~/proof-term"
    result = ssh_tty(proxied, f"xterm;{hidden}", 'eval "${TERM#*;}"')
    assert result.returncode == 255
    assert b"passport: the terminal type is refused" in result.stderr, result.stderr
    assert proxied.ssh("test -e ~/proof-term || echo absent").stdout.strip() == b"absent"
    request_id = proxied.access_request.pk
    refusals = LogbookEntry.objects.filter(action="proxy.refused", request_id=request_id)
    [refused] = wait_for(lambda: list(refusals), what="the refusal in the Logbook")
    assert refused.detail["what"] == "terminal type" and refused.detail["term"] == f"xterm;{hidden}"
    assert refused.detail["command"] == 'eval "${TERM#*;}"'
    all_sealed(request_id)
    assert not TerminalSession.objects.filter(grant=proxied.grant, command='eval "${TERM#*;}"').exists()


def test_hostile_terminal_types_are_refused_and_written_down_escaped(proxied: Proxied) -> None:
    hostile = {
        "$(id)": "$(id)",
        "xterm\nid": "xterm\\x0aid",
        "xterm\x1b]0;owned\x07\x1b[2J": "xterm\\x1b]0;owned\\x07\\x1b[2J",
        "xterm-\u202eroloc652": "xterm-\\u202eroloc652",
        "x" * 10_000: "x" * 256 + "...[truncated]",
    }
    in_one_refusal_window()
    for term in hostile:
        result = ssh_tty(proxied, term, "echo RAN")
        assert result.returncode == 255 and b"RAN" not in result.stdout, (term[:80], result)
        assert b"passport: the terminal type is refused" in result.stderr, (term[:80], result.stderr)
        assert b"\x1b" not in result.stderr and "\u202e".encode() not in result.stderr
    # The same refusal again and again: the first written (escaped as test_environment shows for each
    # of them), each counted under its key.
    tally = wait_for(
        lambda: RefusalTally.objects.filter(action="proxy.refused", count=len(hostile)).first(),
        what="each refusal counted",
    )
    [refused] = LogbookEntry.objects.filter(action="proxy.refused", request_id=proxied.access_request.pk)
    assert refused.detail["refusal_key"] == tally.reason and refused.detail["term"] in hostile.values()
    assert not TerminalSession.objects.filter(grant=proxied.grant).exists()


def test_the_terminal_type_used_is_in_terminal_started_and_the_recording_header(
    proxied: Proxied, settings: Any, tmp_path: Path
) -> None:
    names = ["screen.xterm-256color", "rxvt-unicode-256color", "xterm-kitty", "vt100", ""]
    for term in names:
        result = ssh_tty(proxied, term, SHOW_TERM)
        assert result.returncode == 0, (term, result.stderr)
        shown = f"TERM={term}" if term else "no TERM"  # sshd sets none for an empty terminal type
        assert result.stdout.startswith(f"{shown}\r\n/dev/pts/".encode()), (term, result.stdout)
    request_id = proxied.access_request.pk
    all_sealed(request_id)
    started = LogbookEntry.objects.filter(action="terminal.started", request_id=request_id, detail__kind="exec")
    assert [entry.detail["term"] for entry in started.order_by("id")] == names
    records = TerminalSession.objects.filter(grant=proxied.grant).order_by("id")
    headers = [header_of(record, settings, tmp_path)["env"] for record in records]
    assert headers == [{"TERM": term} if term else {} for term in names]
    without_pty = subprocess.run(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-T", "web-1", SHOW_TERM],
        env={**proxied.cli.env, "TERM": "xterm-256color"}, capture_output=True, timeout=90, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert without_pty.stdout == b"no TERM\nnot a tty\n", without_pty.stdout
    all_sealed(request_id)
    last = TerminalSession.objects.filter(grant=proxied.grant).latest("id")
    assert "term" not in LogbookEntry.objects.get(action="terminal.started", detail__terminal_session=last.pk).detail
    assert header_of(last, settings, tmp_path)["env"] == {}
