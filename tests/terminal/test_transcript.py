"""The searchable text of a recording: escape sequences gone, each piece still knows when it appeared."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from terminal import line_editor, transcript
from terminal.line_editor import TypedLine
from terminal.recording import AsciicastWriter
from terminal.transcript import strip_escapes, time_at, transcript_from_events, transcript_from_file
from terminal.vt import TypedText


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
        [4.0, "i", "\x1b[A"],  # arrow up: no text, but a key
    ]
    transcript = transcript_from_events(events)
    # A line with any key but text is followed by every key typed on it (terminal.line_editor).
    assert transcript.input == "whoami\nls -la  # typed: lz⟨^?⟩s -la\n  # typed: ⟨ESC[A⟩"
    assert transcript.index["commands"] == [[1.2, "whoami"], [3.0, "ls -la  # typed: lz⟨^?⟩s -la"]]
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


def test_a_long_typed_line_with_no_enter_is_held_bounded_for_its_marker() -> None:
    """1 MiB typed (or piped to ``ssh web-1 cat``) with no Enter: the line is held in bounded pieces,
    not re-copied per character (quadratic: 800 KB took 49 s)."""
    builder = transcript.TranscriptBuilder()
    chunk = "a" * 4096
    for n in range(256):
        builder.add([n * 0.001, "i", chunk])
    editor = builder._cleaners["i"]._editor
    assert editor is not None and len(editor._line) <= line_editor.LINE_EDIT_MAX
    assert max(len(piece) for piece in editor._tail) <= 256
    builder.add([1.0, "i", "\r"])
    assert builder.result().index["commands"] == [[1.0, "a" * 80]]


def test_backspace_past_the_start_of_a_long_line_still_edits_the_right_characters() -> None:
    long = 3 * line_editor.LINE_EDIT_MAX
    events = [
        [1.0, "i", "echo " + "a" * long],
        [1.5, "i", "\x7f" * long + "hi\r"],  # back to "echo ", then "hi"
        [2.0, "i", "b" * (line_editor.LINE_EDIT_MAX + 10) + "\x08" * (line_editor.LINE_EDIT_MAX + 5) + "\r"],
        [3.0, "i", "\x7f" * 50 + "x" * 100 + "\r"],
    ]
    built = transcript_from_events(events)
    typed = "  # typed: "
    assert built.input.split("\n") == [
        "echo hi" + typed + "echo " + "a" * long + "⟨^?⟩" * long + "hi",
        "bbbbb" + typed + "b" * (line_editor.LINE_EDIT_MAX + 10) + "⟨^H⟩" * (line_editor.LINE_EDIT_MAX + 5),
        "x" * 100 + typed + "⟨^?⟩" * 50 + "x" * 100,  # (nothing deleted, but a key other than text)
        "",
    ]
    assert built.index["commands"] == [
        [1.5, ("echo hi" + typed + "echo a").ljust(79, "a") + "…"],
        [2.0, ("bbbbb" + typed).ljust(79, "b") + "…"],
        # A marked line's marker: the start of its text and of its mark, so the mark shows.
        [3.0, "x" * 29 + "…" + typed + ("⟨^?⟩" * 10)[:38] + "…"],
    ]


def _markers_of_whole_lines(events: list[list[object]]) -> list[list[object]]:
    """The markers as a plain reading of each line makes them, for keys that never move the cursor:
    the keys (terminal.vt) up to each Enter, a backspace taking back the last character, and every
    key typed on the line after it when any key but text was (a KEY token's placeholder, ⟨^?⟩)."""
    commands: list[list[object]] = []
    reader = TypedText()
    line, typed, marked = "", "", False
    for seconds, _, data in events:
        for piece in re.split(r"(\x1b.[ -~]*\x1b)", reader.feed(str(data))):
            if piece.startswith("\x1b"):
                sent = piece[2:-1]
                typed += f"⟨ESC{sent}⟩" if sent.startswith(("[", "O")) else f"⟨M-{sent}⟩" if sent else "⟨ESC⟩"
                marked = True
                continue
            for character in piece:
                if character in "\r\n":
                    full = line + "  # typed: " + typed if marked else line
                    if full.strip():
                        label = transcript._marker(TypedLine(full, len(line)))
                        commands.append([round(float(str(seconds)), 3), label])
                    line, typed, marked = "", "", False
                elif character in "\x7f\x08":
                    line, typed, marked = line[:-1], typed + ("⟨^?⟩" if character == "\x7f" else "⟨^H⟩"), True
                elif character == "\t" or character >= " ":
                    line, typed = line + character, typed + character
                else:
                    typed, marked = typed + f"⟨^{chr(ord(character) + 64)}⟩", True
    return commands


def test_markers_are_those_of_the_whole_line_for_ordinary_typing() -> None:
    generator = random.Random(20261206)
    alphabet = ["l", "s", " ", "-", "a", "\r", "\n", "\x7f", "\x08", "\x1b[A", "\x1b[1;5D", "\x1b]0;t\x07", "é", "\t"]
    for _ in range(200):
        events: list[list[object]] = [
            [round(0.1 * n, 1), "i", "".join(generator.choice(alphabet) for _ in range(generator.randint(0, 40)))]
            for n in range(generator.randint(1, 8))
        ]
        assert transcript_from_events(events).index["commands"] == _markers_of_whole_lines(events), events


def test_a_direction_cut_at_the_cap_says_so_and_when(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcript, "TRANSCRIPT_MAX_CHARS", 10)
    built = transcript_from_events([[0.1, "o", "abcdef"], [0.2, "i", "ls\r"], [75.5, "o", "ghijklmn"], [76, "o", "x"]])
    assert built.output == "abcdefghij"
    assert built.index["cut"] == {"o": {"characters": 10, "seconds": 75.5}}
    cuts = transcript.transcript_cuts(built.index)
    assert [(cut.what, cut.characters, cut.at) for cut in cuts] == [("printed", 10, "0:01:15")]
    # Exactly at the cap, with nothing after, nothing was left out.
    assert "cut" not in transcript_from_events([[0.1, "o", "abcdefghij"], [0.2, "i", "x"]]).index
    # A stored index from before cuts were recorded, or anything else, says nothing.
    assert transcript.transcript_cuts({"o": []}) == [] and transcript.transcript_cuts(None) == []


def test_the_feed_reads_on_until_each_direction_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """``full`` (which stops the reading) only once both directions were cut: a direction exactly at
    the cap is not cut until more of it comes."""
    monkeypatch.setattr(transcript, "TRANSCRIPT_MAX_CHARS", 4)
    lines = [[0.1, "o", "abcd"], [0.2, "i", "wxyz"], [0.3, "i", "!"], [0.4, "o", "efgh"], [0.5, "o", "more"]]
    data = b'{"version": 2}\n' + b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    feed = transcript.TranscriptFeed()
    feed.feed(data)
    assert feed.builder.full
    assert feed.result().index["cut"] == {
        "i": {"characters": 4, "seconds": 0.3},
        "o": {"characters": 4, "seconds": 0.4},
    }


def test_typed_text_with_its_marks_is_cut_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # 61 keys typed, under the cap, but their line's mark makes it 251 characters: kept to the cap.
    monkeypatch.setattr(transcript, "TRANSCRIPT_MAX_CHARS", 100)
    built = transcript_from_events([[1.0, "i", "\x02" * 60 + "\r"], [2.0, "i", "ls\r"]])
    assert built.input == ("  # typed: " + "⟨^B⟩" * 60)[:100]
    assert built.index["cut"] == {"i": {"characters": 100, "seconds": 1.0}}
    unfinished = transcript_from_events([[1.0, "i", "ls\r"], [3.0, "i", "\x02" * 60]])
    assert len(unfinished.input) == 100 and unfinished.index["cut"] == {"i": {"characters": 100, "seconds": 3.0}}
