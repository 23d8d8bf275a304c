"""A command that ran never leaves the transcript (search) or the player's markers by editing keys.

The review's case: type a command, move the cursor back over it (Left arrow or Ctrl-B: readline
echoes one BS per step), press Backspace four times as often (readline at the start of the line only
rings the bell), then Enter. Bash runs the command; the person's terminal and the player still show
it (BS moves the cursor, it erases nothing). What was printed is kept as printed (a backspace takes
nothing back); what was typed is edited at a cursor, as readline does, and a line whose text is not
what was typed on it, in order, is followed by every character typed on it, since which editor read
the keys (with which bindings) is not known.
"""

from __future__ import annotations

import os
import random
import re
import select
import shutil
import time
from pathlib import Path

import pytest

from terminal import line_editor
from terminal.line_editor import TYPED_MARK
from terminal.transcript import strip_escapes, transcript_from_events, typed_text
from terminal.vt import TypedText

COMMAND = "touch /tmp/pwned"
LEFT, BACKSPACE = "\x1b[D", "\x7f"


def markers(built: object) -> list[str]:
    return [label for _, label in built.index["commands"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("left", [LEFT, "\x1bOD", "\x02"])
def test_a_command_backspaced_at_the_start_of_its_line_is_in_the_transcript_and_its_marker(left: str) -> None:
    n = len(COMMAND)
    events = [
        [0.1, "o", "$ "],
        [0.2, "i", COMMAND],
        [0.2, "o", COMMAND],  # readline's echo
        [0.3, "i", left * n],
        [0.3, "o", "\b" * n],  # the cursor moves back: one BS each
        [0.4, "i", BACKSPACE * (4 * n)],  # at the start of the line: nothing but the bell
        [0.4, "o", "\a" * n],
        [0.5, "i", "\r"],
        [0.5, "o", "\r\n$ "],
    ]
    built = transcript_from_events(events)
    assert built.output == f"$ {COMMAND}\n$ "
    assert built.input.startswith(f"{COMMAND}{TYPED_MARK}{COMMAND}⟨")  # edited, and marked
    assert markers(built)[0].startswith(f"{COMMAND}{TYPED_MARK}{COMMAND}⟨")


@pytest.mark.parametrize("home", ["\x01", "\x1b[H", "\x1bOH", "\x1b[1~", "\x1b[7~"])
def test_home_then_backspaces_deletes_nothing(home: str) -> None:
    built = transcript_from_events([[1.0, "i", COMMAND + home + "\x08" * 40 + "\r"]])
    assert built.input.startswith(f"{COMMAND}{TYPED_MARK}{COMMAND}⟨")
    assert markers(built)[0].startswith(f"{COMMAND}{TYPED_MARK}{COMMAND}⟨")


def test_what_is_printed_and_backspaced_over_stays_as_the_screen_shows_it() -> None:
    # A program prints a line, moves back over it with BS and down with CSI B: the screen keeps it.
    assert "SECRET-TOKEN-123" in strip_escapes("SECRET-TOKEN-123" + "\b" * 16 + "\x1b[B")
    assert strip_escapes("SECRET\b\b\b\b\b\b\x1b[B") == "SECRET"
    assert transcript_from_events([[1.0, "o", "SECRET"], [2.0, "o", "\b" * 6 + "\x1b[B\r\n"]]).output == "SECRET\n"
    # Nothing printed is taken back, not even what a later character overwrites on the screen.
    assert strip_escapes("ab\bc\r\n") == "abc\n"


# (what was typed, its typed text): readline's emacs mode, the cursor keys as the terminal sends them.
EDITED = [
    ("tuch x" + LEFT * 5 + "o\r", "touch x" + TYPED_MARK + "tuch x" + "⟨ESC[D⟩" * 5 + "o\n"),
    ("ab\x1bOD\x1bODc\r", "cab" + TYPED_MARK + "ab⟨ESCOD⟩⟨ESCOD⟩c\n"),
    ("ls -la\x1b[H# \r", "# ls -la" + TYPED_MARK + "ls -la⟨ESC[H⟩# \n"),
    ("ls\x01\x06\x06\x06\x05 -l\r", "ls -l" + TYPED_MARK + "ls⟨^A⟩⟨^F⟩⟨^F⟩⟨^F⟩⟨^E⟩ -l\n"),
    ("abc" + LEFT * 2 + "\x1b[3~\r", "ac" + TYPED_MARK + "abc⟨ESC[D⟩⟨ESC[D⟩⟨ESC[3~⟩\n"),
    ("echo b\x01" + "\x04" * 5 + "\r", "b" + TYPED_MARK + "echo b⟨^A⟩" + "⟨^D⟩" * 5 + "\n"),
    ("cat foo\x17bar\r", "cat bar" + TYPED_MARK + "cat foo⟨^W⟩bar\n"),
    ("cat foo  \x17\r", "cat " + TYPED_MARK + "cat foo  ⟨^W⟩\n"),
    ("rm -rf /\x15ls\r", "ls" + TYPED_MARK + "rm -rf /⟨^U⟩ls\n"),
    ("abcd" + LEFT * 2 + "\x0b\r", "ab" + TYPED_MARK + "abcd⟨ESC[D⟩⟨ESC[D⟩⟨^K⟩\n"),
    ("abcd" + LEFT * 2 + "\x15\r", "cd" + TYPED_MARK + "abcd⟨ESC[D⟩⟨ESC[D⟩⟨^U⟩\n"),
    ("abcd" + LEFT * 2 + BACKSPACE + "X\r", "aXcd" + TYPED_MARK + "abcd⟨ESC[D⟩⟨ESC[D⟩⟨^?⟩X\n"),
    # Ctrl-V: the next key is inserted as it is (a DEL so inserted deletes nothing).
    ("x\x16\x7fy\r", "xy" + TYPED_MARK + "x⟨^V⟩⟨^?⟩y\n"),
    # Up and Down (history), Alt and a key, Ctrl-Left: not modelled, so marked.
    ("ls\x1b[A\x1b[B\x1bb\x1b[1;5D -l\r", "ls -l" + TYPED_MARK + "ls⟨ESC[A⟩⟨ESC[B⟩⟨M-b⟩⟨ESC[1;5D⟩ -l\n"),
    # Deleting past the end or before the start deletes nothing.
    ("ab\x04\x0b\x1b[3~\r", "ab" + TYPED_MARK + "ab⟨^D⟩⟨^K⟩⟨ESC[3~⟩\n"),
    ("ab\x01\x7f\x08\x15\x17\r", "ab" + TYPED_MARK + "ab⟨^A⟩⟨^?⟩⟨^H⟩⟨^U⟩⟨^W⟩\n"),
]


@pytest.mark.parametrize(("typed", "text"), EDITED)
def test_a_typed_line_is_edited_at_its_cursor(typed: str, text: str) -> None:
    assert typed_text(typed) == text
    for cut in range(1, len(typed)):
        assert transcript_from_events([[1.0, "i", typed[:cut]], [2.0, "i", typed[cut:]]]).input == text
    assert markers(transcript_from_events([[1.0, "i", typed]])) == [text.strip()[:80]]


def _typed_on_each_line(keys: str) -> list[str]:
    """The text typed on each line (up to each Enter), nothing deleted: no control or sequence key."""
    reader = TypedText()
    given = re.sub(r"\x1b.[ -~]*\x1b", "\x1b", reader.feed(keys) + reader.end())  # a KEY token: ESC
    lines, line, quoted = [], "", False
    for key in given:
        if quoted:
            quoted = False  # Ctrl-V: the next key is inserted, Enter too
            line += key if key == "\t" or (key >= " " and key != "\x7f") else ""
        elif key == "\x16":
            quoted = True
        elif key in "\r\n":
            lines.append(line)
            line = ""
        elif key == "\t" or (key >= " " and key != "\x7f"):
            line += key
    return [*lines, line]


def test_no_editing_keys_take_a_typed_character_out_of_its_line() -> None:
    """Whatever the editor made of the keys, a command typed on a line is there whole: the line as
    edited, or what follows it, every character typed on it."""
    generator = random.Random(20261206)
    keys = ["l", "s", " ", "-", "é", "\t", "\r", "\x7f", "\x08", "\x01", "\x02", "\x04", "\x05", "\x06", "\x0b"]
    keys += ["\x15", "\x16", "\x17", LEFT, "\x1b[C", "\x1b[H", "\x1b[F", "\x1b[3~", "\x1bOD", "\x1b[A", "\x1bb"]
    for _ in range(500):
        typed = "".join(generator.choice(keys) for _ in range(generator.randint(0, 60)))
        lines = typed_text(typed).split("\n")
        for text, raw in zip(lines, _typed_on_each_line(typed), strict=True):
            assert raw in re.sub("⟨[^⟩]*⟩", "", text), (typed, text, raw)  # the placeholders taken out
        built = transcript_from_events([[1.0, "i", typed]])
        ended = [line.strip() for line in lines[:-1] if line.strip()]  # the last has no Enter: no marker
        for label, text in zip(markers(built), ended, strict=True):
            assert label == text[:80] or (TYPED_MARK.strip() in text and TYPED_MARK.strip() in label), (
                typed,
                label,
                text,
            )


def test_a_long_line_is_held_in_bounded_pieces_and_edited_at_its_end() -> None:
    editor = line_editor.LineEditor()
    assert editor.feed("echo " + "a" * (3 * line_editor.LINE_EDIT_MAX)) == []
    assert len(editor._line) <= line_editor.LINE_EDIT_MAX
    assert all(len(piece) <= 256 for piece in editor._tail)
    editor.feed("\x02" * 10 + "\x01")  # no cursor on a long line: Backspace deletes at its end
    [line] = editor.feed(BACKSPACE * (3 * line_editor.LINE_EDIT_MAX) + "hi\r")
    typed = "echo " + "a" * (3 * line_editor.LINE_EDIT_MAX) + "⟨^B⟩" * 10 + "⟨^A⟩"
    assert line == "echo hi" + TYPED_MARK + typed + "⟨^?⟩" * (3 * line_editor.LINE_EDIT_MAX) + "hi"


def test_a_long_adversarial_line_is_read_in_reasonable_time() -> None:
    """Keys that move the cursor over a long line and edit at its start cost a bounded amount each."""
    start = time.monotonic()
    line = "a" * (line_editor.LINE_EDIT_MAX - 1)
    built = transcript_from_events([[1.0, "i", line], [2.0, "i", "\x01x\x7f\x05" * 250_000 + "\r"]])
    assert time.monotonic() - start < 20
    assert built.input.startswith(line + TYPED_MARK)


def _bash(keys: list[str], tmp_path: Path) -> list[list[object]]:
    """The keys typed into a real interactive bash in a pty: the recording's events."""
    import pty

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    environment = {"PS1": "$ ", "TERM": "xterm-256color", "PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    environment["INPUTRC"] = str(tmp_path / "inputrc")
    (tmp_path / "inputrc").write_text("set bell-style none\nset enable-bracketed-paste off\n")
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(tmp_path)
        os.execve(bash, [bash, "--norc", "--noprofile", "-i"], environment)  # noqa: S606 - a fixed argv, no shell

    def drain(wait: float) -> str:
        got, end = b"", time.monotonic() + wait
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    got += os.read(fd, 65536)
                except OSError:
                    break
        return got.decode("utf-8", "replace")

    events: list[list[object]] = [[0.0, "o", drain(1.0)]]
    for n, typed in enumerate(keys, start=1):
        os.write(fd, typed.encode())
        events += [[n / 10, "i", typed], [n / 10, "o", drain(0.4)]]
    os.write(fd, b"exit\r")
    drain(0.3)
    os.close(fd)
    os.waitpid(pid, 0)
    return events


@pytest.mark.parametrize(
    ("keys", "ran", "echoed"),
    [
        # The review's keys: Left to the start, Backspace four times as often, Enter.
        (["touch hidden-1", LEFT * 14, BACKSPACE * 56, "\r"], "touch hidden-1", True),
        (["touch hidden-2", "\x02" * 14, "\x08" * 56, "\r"], "touch hidden-2", True),
        (["touch hidden-3", "\x01", BACKSPACE * 20, "\r"], "touch hidden-3", True),
        # Edited as readline edits it: inserted before the cursor, deleted under it (readline redraws
        # the rest of the line, which the printed text keeps as printed, after what it overwrites).
        (["tuch hidden-4", LEFT * 12, "o", "\x05", "\r"], "touch hidden-4", False),
        (["ttouch hidden-5", "\x01", "\x04", "\r"], "touch hidden-5", False),
    ],
)
def test_keys_a_real_bash_runs_are_in_the_transcript_and_the_markers(
    keys: list[str], ran: str, echoed: bool, tmp_path: Path
) -> None:
    events = _bash(keys, tmp_path)
    assert (tmp_path / ran.split()[1]).exists(), f"bash did not run {ran!r}: {events}"
    built = transcript_from_events(events)
    assert not echoed or f"$ {ran}" in built.output, built.output
    assert built.input.splitlines()[0].startswith(ran), built.input
    assert markers(built)[0].startswith(ran), markers(built)


# A review's bypasses: keys the line editor does not follow (past LINE_EDIT_MAX, Alt and a key,
# Ctrl-T, function keys, a terminal's answers) make bash run a line other than the one edited. Any
# key but plain text marks the line, and its mark shows every key, the others as placeholders.
def _hidden(keys: list[str], name: str, tmp_path: Path) -> tuple[str, list[str]]:
    events = _bash(["stty -echo\r", *keys], tmp_path)
    assert (tmp_path / name).exists(), f"bash did not run it: {events}"
    built = transcript_from_events(events)
    return built.input.splitlines()[1], markers(built)[1:]


def test_home_on_a_line_past_LINE_EDIT_MAX_marks_it(tmp_path: Path) -> None:
    line, shown = _hidden(["hiddenlong" + " " * 4100, "\x1b[H", "touch ", "\r"], "hiddenlong", tmp_path)
    assert line.endswith(f"{TYPED_MARK}hiddenlong{' ' * 4100}⟨ESC[H⟩touch "), line[-80:]
    assert TYPED_MARK.strip() in shown[0] and shown[0].startswith("hiddenlong"), shown


def test_alt_b_marks_its_line(tmp_path: Path) -> None:
    line, shown = _hidden(["hiddenaltb", "\x1bb", "touch ", "\r"], "hiddenaltb", tmp_path)
    assert line.endswith(f"{TYPED_MARK}hiddenaltb⟨M-b⟩touch "), line
    assert "hiddenaltb⟨M-b⟩touch" in shown[0], shown


def test_a_paste_overflowing_LINE_EDIT_MAX_after_Home_marks_its_line(tmp_path: Path) -> None:
    line, shown = _hidden(["hiddenpaste", "\x01", " " * 4100 + "touch ", "\r"], "hiddenpaste", tmp_path)
    assert line.endswith(f"{TYPED_MARK}hiddenpaste⟨^A⟩{' ' * 4100}touch "), line[-80:]
    assert TYPED_MARK.strip() in shown[0], shown


def test_f5_which_bash_reads_as_a_tilde_marks_its_line(tmp_path: Path) -> None:
    line, shown = _hidden(["touch \x1b[15~/hiddentilde\r"], "hiddentilde", tmp_path)
    assert line.endswith(f"{TYPED_MARK}touch ⟨ESC[15~⟩/hiddentilde"), line
    assert "touch ⟨ESC[15~⟩/hiddentilde" in shown[0], shown


def test_a_status_report_which_bash_reads_as_its_n_marks_its_line(tmp_path: Path) -> None:
    line, shown = _hidden(["touch hidde\x1b[0n\r"], "hidden", tmp_path)
    assert line.endswith(f"{TYPED_MARK}touch hidde⟨ESC[0n⟩"), line
    assert "touch hidde⟨ESC[0n⟩" in shown[0], shown


@pytest.mark.parametrize(
    ("typed", "mark"),
    [
        ("ab\x14c\r", "ab⟨^T⟩c"),  # Ctrl-T transposes
        ("ab\x1bfc\r", "ab⟨M-f⟩c"),
        ("ab\x1b[1;2Pc\r", "ab⟨ESC[1;2P⟩c"),
        ("ab\x1b[6;5~c\r", "ab⟨ESC[6;5~⟩c"),
        ("ab\x1b\x1bc\r", "ab⟨ESC⟩⟨M-c⟩"),  # ESC alone, then Alt-C
        ("ab\x1bOPc\r", "ab⟨ESCOP⟩c"),
        ("ab\x1b[Dc\r", "ab⟨ESC[D⟩c"),
        ("ab\x7fc\r", "ab⟨^?⟩c"),
        ("ab\x16\x01c\r", "ab⟨^V⟩⟨^A⟩c"),
    ],
)
def test_any_key_but_text_marks_its_line_with_a_placeholder(typed: str, mark: str) -> None:
    assert typed_text(typed).endswith(f"{TYPED_MARK}{mark}\n")
