"""terminal.transcript.withhold: keys typed at a prompt for a secret that the host did not show back are
not written to the recording, by the transcript's own rule and limits (terminal.transcript.echo)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from terminal.recording import AsciicastWriter, raw_streams
from terminal.transcript import transcript_from_events, transcript_from_file
from terminal.transcript.echo import HIDDEN_IN_A_ROW, NOT_SHOWN, SAME_PROMPT_MAX
from terminal.transcript.withhold import HELD_INPUT_MAX, HELD_OUTPUT_MAX, WITHHELD, SecretInputGate

SUDO = "[sudo] password for rs-x: "
SECRET = "hunter2-secret"


def _gated(events: list[list[Any]]) -> tuple[list[list[Any]], SecretInputGate]:
    """``events`` through a gate, and what it wrote, in order."""
    written: list[list[Any]] = []
    gate = SecretInputGate()
    gate.attach(lambda seconds, code, text: written.append([seconds, code, text]))
    for seconds, code, text in events:
        gate.event(seconds, code, text)
    gate.close()
    return written, gate


def _keys(text: str, start: float) -> list[list[Any]]:
    """``text`` typed a key at a time, 10 ms apart."""
    return [[round(start + number / 100, 3), "i", key] for number, key in enumerate(text)]


def _sudo(start: float, typed: str, *, echo: bool = False, prompt: str = SUDO) -> list[list[Any]]:
    """A command asking for a password at ``prompt``, ``typed`` at it, and the next shell prompt."""
    events = [[start, "i", "sudo -k true\r"], [start + 0.05, "o", f"sudo -k true\r\n{prompt}"]]
    for seconds, code, key in _keys(typed, start + 0.1):
        events.append([seconds, code, key])
        if echo:
            events.append([seconds + 0.001, "o", key])
    return [*events, [start + 0.9, "i", "\r"], [start + 0.95, "o", "\r\n$ "]]


def test_a_password_not_echoed_is_withheld_and_its_enter_kept() -> None:
    events = [[0.0, "o", "$ "], *_sudo(0.1, SECRET), [1.2, "i", "id\r"], [1.3, "o", "id\r\nuid=1001\r\n$ "]]
    written, gate = _gated(events)
    assert not any(SECRET[:3] in text for _, code, text in written if code == "i")
    assert [0.2, WITHHELD, str(len(SECRET))] in written and [1.0, "i", "\r"] in written
    assert (gate.withheld_bytes, gate.withheld_lines) == (len(SECRET), 1)
    assert [event[0] for event in written] == sorted(event[0] for event in written)
    # Everything else as it was; the transcript reads the "w" event as a line not shown.
    assert [event for event in written if event[1] != WITHHELD and event[2] not in SECRET] == [
        event for event in events if event[2] not in SECRET or event[2] == "\r"
    ]
    built = transcript_from_events(written)
    assert built.input == f"sudo -k true\n{NOT_SHOWN}\nid\n"
    assert [label for _, label in built.index["commands"]] == ["sudo -k true", "id"]


def test_keys_echoed_at_a_password_prompt_are_written_as_they_were() -> None:
    events = [[0.0, "o", "$ "], *_sudo(0.1, "visible", echo=True, prompt="Password: ")]
    written, gate = _gated(events)
    assert written == events and gate.withheld_lines == 0


def test_output_between_the_keys_stays_in_time_order() -> None:
    """sudo with ``pwfeedback`` prints a ``*`` per key: the stars are written, each after its key's time."""
    events = [[0.0, "o", "$ "], [0.1, "i", "sudo -k true\r"], [0.15, "o", f"sudo -k true\r\n{SUDO}"]]
    for seconds, code, key in _keys(SECRET, 0.2):
        events += [[seconds, code, key], [seconds + 0.001, "o", "*"]]
    events += [[0.5, "i", "\r"], [0.55, "o", "\r\n$ "]]
    written, _ = _gated(events)
    assert [text for _, code, text in written if code == "o"] == [text for _, code, text in events if code == "o"]
    assert [event[0] for event in written] == sorted(event[0] for event in written)
    assert [event[2] for event in written if event[1] == WITHHELD] == [str(len(SECRET))]


def _fake(start: float, typed: str, prompt: str) -> list[list[Any]]:
    """``PS1='Password: '`` with echo off: a command typed at the "prompt", not echoed; its output."""
    return [*_keys(typed, start), [start + 0.5, "i", "\r"], [start + 0.6, "o", f"\r\nran\r\n{prompt}"]]


def test_a_fake_prompt_hides_no_more_than_the_transcript_rule() -> None:
    """The same prompt every time: SAME_PROMPT_MAX lines withheld, then kept; prompts that differ:
    HIDDEN_IN_A_ROW in all, until a line is echoed."""
    same: list[list[Any]] = [[0.0, "o", "Password: "]]
    for number in range(SAME_PROMPT_MAX + 2):
        same += _fake(1.0 + number, f"command-{number}", "Password: ")
    written, gate = _gated(same)
    typed = "".join(text for _, code, text in written if code == "i")
    assert gate.withheld_lines == SAME_PROMPT_MAX
    assert [f"command-{number}" in typed for number in range(SAME_PROMPT_MAX + 2)] == [False] * 3 + [True] * 2

    differing: list[list[Any]] = [[0.0, "o", "Password 0: "]]
    for number in range(HIDDEN_IN_A_ROW + 2):
        differing += _fake(1.0 + number, f"command-{number}", f"Password {number + 1}: ")
    differing += [[20.0, "i", "echo x\r"], [20.1, "o", "echo x\r\nx\r\n$ "], *_sudo(21.0, "again")]
    written, gate = _gated(differing)
    typed = "".join(text for _, code, text in written if code == "i")
    assert gate.withheld_lines == HIDDEN_IN_A_ROW + 1  # an echoed line starts a new run
    hidden = [f"command-{number}" not in typed for number in range(HIDDEN_IN_A_ROW + 2)]
    assert hidden == [True] * HIDDEN_IN_A_ROW + [False] * 2 and "again" not in typed
    # The transcript of what was written hides the same lines, no more.
    assert transcript_from_events(written).input.count(NOT_SHOWN) == HIDDEN_IN_A_ROW + 1


def test_a_line_typed_before_the_prompt_is_kept() -> None:
    """Typed ahead (a paste): the prompt that asks for it was not printed yet, so it is no secret's."""
    events = [[0.0, "o", "$ "], [0.1, "i", f"sudo -k true\r{SECRET}\r"], [0.2, "o", f"sudo -k true\r\n{SUDO}"]]
    written, gate = _gated([*events, [0.3, "o", "\r\n$ "]])
    assert gate.withheld_lines == 0 and SECRET in "".join(text for _, code, text in written if code == "i")


def test_a_password_still_being_typed_at_the_end_is_withheld() -> None:
    written, gate = _gated([[0.0, "o", "$ "], [0.1, "i", "su\r"], [0.2, "o", "su\r\nPassword: "], *_keys("hunt", 0.3)])
    assert [event[1:] for event in written[-1:]] == [[WITHHELD, "4"]] and gate.withheld_bytes == 4
    assert "hunt" not in json.dumps(written)


def test_output_held_past_its_bound_is_written_and_the_keys_still_withheld() -> None:
    """Typing at the prompt while the host prints on: the output goes out once past HELD_OUTPUT_MAX."""
    flood = "x" * 4096 + "\r\n"
    events: list[list[Any]] = [[0.0, "o", "$ "], [0.1, "i", "sudo -k true\r"], [0.2, "o", f"sudo -k true\r\n{SUDO}"]]
    events += [[0.3, "i", "hunt"], *([[0.4, "o", flood]] * (HELD_OUTPUT_MAX // len(flood) + 2))]
    events += [[0.5, "o", SUDO], [0.6, "i", "er2\r"], [0.7, "o", "\r\n$ "]]
    written, gate = _gated(events)
    assert "hunt" not in json.dumps(written) and "er2" not in json.dumps(written)
    assert (
        gate.withheld_lines == 1 and sum(text == flood for _, _, text in written) == HELD_OUTPUT_MAX // len(flood) + 2
    )


def test_the_writer_withholds_and_a_raw_recordings_input_digest_covers_what_it_holds(tmp_path: Path) -> None:
    """A command on a pty, kept byte for byte (the CLI's ``ssh -t host cmd``): the file holds no key of the
    password, its ``i`` events are the input less those keys, and the counts add up."""
    path = tmp_path / "session.cast"
    gate = SecretInputGate()
    writer = AsciicastWriter(path, cols=80, rows=24, title="t", raw=True, gate=gate)
    written = hashlib.sha256()
    writer.input_written = written.update
    typed = [b"sudo -k true\r", SECRET.encode(), b"\xff\r", b"ls\r"]
    writer.output(b"$ ")
    writer.input(typed[0])
    writer.output(f"sudo -k true\r\n{SUDO}".encode())
    writer.input(typed[1])
    writer.input(typed[2])  # a byte that is not UTF-8, withheld too
    writer.output(b"\r\n$ ")
    writer.input(typed[3])
    writer.output(b"ls\r\nfile\r\n$ ")
    writer.close()
    data = path.read_bytes()
    assert SECRET.encode() not in data
    events = [json.loads(line) for line in data.decode().splitlines()[1:]]
    stream = raw_streams(events)["i"]
    assert stream == b"sudo -k true\r\rls\r" and written.hexdigest() == hashlib.sha256(stream).hexdigest()
    assert writer.withheld_bytes == len(SECRET) + 1 and writer.bytes_in == len(stream) + writer.withheld_bytes
    assert transcript_from_file(path).input == f"sudo -k true\n{NOT_SHOWN}\nls\n"


def test_a_line_too_long_for_a_password_is_written_as_typed() -> None:
    """Past HELD_INPUT_MAX typed at a prompt for a secret and not decided: no password, and not held."""
    long_line = "y" * (HELD_INPUT_MAX + 10)
    events = [[0.0, "o", "$ "], [0.1, "i", "su\r"], [0.2, "o", "su\r\nPassword: "], [0.3, "i", long_line[:1000]]]
    events += [[0.4, "i", long_line[1000:]], [0.5, "o", "x\r\n"], [0.6, "i", "more\r"], [0.7, "o", "\r\n$ "]]
    written, gate = _gated(events)
    assert written == events and gate.withheld_lines == 0


def test_a_password_ended_before_a_long_paste_is_still_withheld() -> None:
    """Past HELD_INPUT_MAX pasted after a password's Enter, before the host answered it: the paste is
    written, the password's line stays held until decided (and is withheld)."""
    paste = "line of text\r" * (HELD_INPUT_MAX // 13 + 10)
    one_line = "line of text " * (HELD_INPUT_MAX // 13 + 10)
    events = [
        [0.0, "o", "$ "],
        [0.1, "i", "sudo tee /etc/motd\r"],
        [0.15, "o", "sudo tee /etc/motd\r\n" + SUDO],
        [0.2, "i", SECRET + "\r"],
        [0.21, "i", paste],
        [0.3, "o", "\r\n"],
        [1.0, "o", "$ "],
    ]
    written, gate = _gated(events)
    assert not any(SECRET[:3] in text for _, code, text in written if code == "i")
    assert [0.2, WITHHELD, str(len(SECRET))] in written
    # Past PENDING_MAX lines the judge decides the oldest by what was printed: two pasted lines at the
    # prompt are hidden too (SAME_PROMPT_MAX), as the transcript hides them; the rest written as typed.
    assert gate.withheld_lines == SAME_PROMPT_MAX
    assert transcript_from_events(written).input.count(NOT_SHOWN) == SAME_PROMPT_MAX
    typed = "".join(text for _, code, text in written if code == "i")
    assert typed.count("line of text\r") == paste.count("\r") - SAME_PROMPT_MAX + 1
    assert [event[0] for event in written] == sorted(event[0] for event in written)
    # Decided once the host answers: the paste and output as they came, the password's line after them.
    written, gate = _gated([*events[:4], [0.21, "i", one_line], [0.22, "i", "x"], *events[5:]])
    assert [event[1:] for event in written[-4:]] == [["o", "\r\n"], [WITHHELD, "14"], ["i", "\r"], ["o", "$ "]]
    assert written[-5][1:] == ["i", "x"] and written[-6][1:] == ["i", one_line] and gate.withheld_lines == 1


def test_a_password_typed_ahead_of_its_prompt_is_withheld() -> None:
    """Its first keys reach the portal before sudo's prompt does (sudo has echo off already): it is judged
    by the prompt printed after the Enter before it, as the transcript judges it."""
    events = [[0.0, "o", "$ "], [0.1, "i", "sudo -k true\r"], [0.12, "i", "h"], [0.13, "i", "u"]]
    events += [[0.15, "o", f"sudo -k true\r\n{SUDO}"], *_keys(SECRET[2:], 0.2), [0.5, "i", "\r"]]
    events += [[0.55, "o", "\r\n$ "], [0.8, "i", "id\r"], [0.85, "o", "id\r\nuid=1\r\n$ "]]
    written, gate = _gated(events)
    typed = "".join(text for _, code, text in written if code == "i")
    assert SECRET[2:] not in typed and typed == "sudo -k true\r\rid\r"
    assert [0.12, WITHHELD, str(len(SECRET))] in written and gate.withheld_lines == 1
    assert [event[0] for event in written] == sorted(event[0] for event in written)
    assert transcript_from_events(written).input == f"sudo -k true\n{NOT_SHOWN}\nid\n"
    assert transcript_from_events(events).input == f"sudo -k true\n{NOT_SHOWN}\nid\n"


def test_commands_typed_ahead_of_a_shell_prompt_are_written_in_time_order() -> None:
    events = [[0.0, "o", "$ "], [0.1, "i", "ls\r"], *_keys("pwd\r", 0.11), [0.2, "o", "ls\r\nfile\r\n$ "]]
    events += [[0.25, "o", "pwd\r\n/home\r\n$ "], [0.3, "i", "id\r"], [0.35, "o", "id\r\nuid=1\r\n$ "]]
    written, gate = _gated(events)
    assert written == events and gate.withheld_lines == 0


def test_a_long_paste_is_written_as_one_event_and_every_line_kept() -> None:
    """Thousands of short lines pasted at a shell prompt: written as they came, one event (the transcript
    reads one paste, not a line typed per event), each line kept in the transcript and marked."""
    paste = "".join(f"echo {number}\r" for number in range(5000))
    events = [[0.0, "o", "$ "], [0.1, "i", paste], [0.2, "o", "echo 0\r\n0\r\n$ "], [0.3, "o", "echo 1\r\n"]]
    written, gate = _gated(events)
    assert written == events and gate.withheld_lines == 0
    built = transcript_from_events(written)
    assert built.input == paste.replace("\r", "\n")
    assert [label for _, label in built.index["commands"]][:3] == ["echo 0", "echo 1", "echo 2"]


def test_a_password_typed_ahead_after_a_long_paste_is_withheld() -> None:
    """A paste whose last line asks for a password, the password typed before sudo's prompt arrives: the
    pasted lines wait as a run (terminal.transcript.echo ``pasting``), the password's keys behind them."""
    paste = "".join(f"echo {number}\r" for number in range(200)) + "sudo -k true\r"
    events = [[0.0, "o", "$ "], [0.1, "i", paste], *_keys(SECRET, 0.2), [0.4, "i", "\r"]]
    events += [[0.5, "o", f"echo 0\r\n0\r\n$ sudo -k true\r\n{SUDO}"], [0.6, "o", "\r\n$ "], [0.7, "i", "id\r"]]
    events += [[0.8, "o", "id\r\nuid=1\r\n$ "]]
    written, gate = _gated(events)
    typed = "".join(text for _, code, text in written if code == "i")
    assert SECRET[:3] not in typed and typed == paste + "\rid\r"
    assert [0.2, WITHHELD, str(len(SECRET))] in written and gate.withheld_lines == 1
    assert [event[0] for event in written] == sorted(event[0] for event in written)
    assert transcript_from_events(written).input.endswith(f"sudo -k true\n{NOT_SHOWN}\nid\n")
    assert transcript_from_events(events).input.endswith(f"sudo -k true\n{NOT_SHOWN}\nid\n")
