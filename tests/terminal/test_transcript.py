"""The searchable text of a recording: escape sequences gone, each piece still knows when it appeared."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminal import transcript
from terminal.recording import AsciicastWriter
from terminal.transcript import strip_escapes, time_at, transcript_from_events, transcript_from_file


def test_colours_titles_and_cursor_moves_are_removed() -> None:
    raw = "\x1b[1;32mrs-ab12\x1b[0m@web:~$ \x1b]0;rs-ab12@web: ~\x07ls\r\n\x1b[2K\x1b[?2004hREADME\x1b(B\r\n"
    assert strip_escapes(raw) == "rs-ab12@web:~$ ls\nREADME\n"


def test_an_escape_split_across_events_is_still_removed_and_times_follow_the_text() -> None:
    events = [
        [0.5, "o", "prompt$ "],
        [1.25, "o", "\x1b["],
        [1.5, "o", "31mTOP-SECRET\x1b[0m\r\n"],
        [2.0, "o", "done\r\n"],
    ]
    transcript = transcript_from_events(events)
    assert transcript.output == "prompt$ TOP-SECRET\ndone\n"
    assert time_at(transcript.index["o"], transcript.output.index("TOP-SECRET")) == 1.5
    assert time_at(transcript.index["o"], transcript.output.index("done")) == 2.0
    assert time_at(transcript.index["o"], 0) == 0.5


def test_typed_text_keeps_lines_applies_backspace_and_gives_command_markers() -> None:
    events = [
        [1.0, "i", "who"],
        [1.2, "i", "ami\r"],
        [3.0, "i", "lz\x7fs -la\r"],
        [4.0, "i", "\x1b[A"],  # arrow up: no text
    ]
    transcript = transcript_from_events(events)
    assert transcript.input == "whoami\nls -la\n"
    assert transcript.index["commands"] == [[1.2, "whoami"], [3.0, "ls -la"]]
    assert time_at(transcript.index["i"], transcript.input.index("ls -la")) == 3.0


def test_from_a_real_recording_file(tmp_path: Path) -> None:
    writer = AsciicastWriter(tmp_path / "one.cast", cols=80, rows=24, title="t")
    writer.output("\x1b[1mcafé ☃\x1b[0m\r\n".encode())
    writer.input(b"echo hi\r")
    writer.resize(100, 30)
    writer.close()
    transcript = transcript_from_file(tmp_path / "one.cast")
    assert transcript.output == "café ☃\n"
    assert transcript.input == "echo hi\n"
    assert transcript.index["commands"][0][1] == "echo hi"


def test_an_empty_or_broken_file_gives_empty_text(tmp_path: Path) -> None:
    path = tmp_path / "broken.cast"
    path.write_text('{"version": 2}\nnot json\n[1, "o"]\n[1, "x", "?"]\n')
    transcript = transcript_from_file(path)
    assert transcript.output == "" and transcript.input == ""


def test_each_direction_keeps_at_most_the_cap_for_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session printing more than the cap (a binary dump) seals with a bounded search text."""
    monkeypatch.setattr(transcript, "TRANSCRIPT_MAX_CHARS", 10)
    built = transcript.transcript_from_events([[0.1, "o", "abcdef"], [0.2, "o", "ghijklmn"], [0.3, "o", "opq"]])
    assert built.output == "abcdefghij"
    assert [offset for offset, _ in built.index["o"]] == [0, 6]


def test_command_markers_stop_at_a_bound_and_count_the_rest_while_the_typed_text_stays_whole() -> None:
    # A pasted script, or `ssh web-1 bash < script.sh`: one marker per line would be one DOM node each
    # in the auditor's player, which never finishes drawing tens of thousands.
    lines = transcript.MAX_MARKERS + 2500
    result = transcript_from_events([[1.0, "i", "x\r" * lines], [2.0, "i", "last\r"]])
    assert len(result.index["commands"]) == transcript.MAX_MARKERS
    assert result.index["commands_not_shown"] == lines + 1 - transcript.MAX_MARKERS
    assert result.input == "x\n" * lines + "last\n"
    assert transcript_from_events([[1.0, "i", "ls\r"]]).index["commands_not_shown"] == 0
