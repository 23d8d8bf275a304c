from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from terminal.frames import MAX_COLS, MAX_ROWS
from terminal.recording import AsciicastWriter, raw_streams
from terminal.transcript import transcript_from_events


def test_asciicast_v2_events_and_digest(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "one.cast"
    writer = AsciicastWriter(path, cols=80, rows=24, title="t")
    snowman = "☃".encode()
    writer.output(b"hello " + snowman[:1])  # a character split across two reads is written whole
    writer.output(snowman[1:] + b"\r\n")
    writer.input(b"ls\r")
    writer.resize(100, 30)
    digest = writer.close()
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] == 80 and header["height"] == 24
    events = [json.loads(line) for line in lines[1:]]
    assert [event[1] for event in events] == ["o", "o", "i", "r"]
    assert "".join(event[2] for event in events if event[1] == "o") == "hello ☃\r\n"
    assert events[-1][2] == "100x30"
    assert writer.bytes_out == len(b"hello ") + len(snowman) + 2 and writer.bytes_in == 3
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_header_names_the_terminal_as_told_and_none_when_told_none(tmp_path: Path) -> None:
    headers = []
    for number, env in enumerate(({"TERM": "screen.xterm-256color"}, {}, None)):
        path = tmp_path / f"{number}.cast"
        AsciicastWriter(path, cols=80, rows=24, title="t", env=env).close()
        headers.append(json.loads(path.read_text().splitlines()[0])["env"])
    assert headers == [{"TERM": "screen.xterm-256color"}, {}, {"TERM": "xterm-256color"}]


def _events(path: Path) -> list[list[object]]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_a_raw_recording_keeps_any_bytes_each_way_and_shows_the_rest_replaced(tmp_path: Path) -> None:
    path = tmp_path / "raw.cast"
    writer = AsciicastWriter(path, cols=80, rows=24, title="t", raw=True)
    sent = gzip.compress(b"echo hi\n" * 40) + bytes(range(256))
    printed = "héllo ☃ ".encode() + b"\xff\xfe ok \xed\xa0\x80 " + "☃".encode()[:2]  # ends mid-character
    for start in range(0, len(sent), 7):
        writer.input(sent[start : start + 7])
    for start in range(0, len(printed), 3):
        writer.output(printed[start : start + 3])
    writer.close()
    events = _events(path)
    assert raw_streams(events) == {"o": printed, "i": sent}
    assert writer.raw_events and not writer.lossy
    shown = "".join(str(event[2]) for event in events if event[1] == "o")
    assert shown.startswith("héllo ☃ \ufffd\ufffd ok ") and transcript_from_events(events).output.startswith("héllo")
    assert {event[1] for event in events} == {"o", "i", "b"}


def test_a_terminal_recording_says_when_it_replaced_bytes_but_not_for_a_real_replacement_character(
    tmp_path: Path,
) -> None:
    clean = AsciicastWriter(tmp_path / "clean.cast", cols=80, rows=24, title="t")
    clean.output("a real \ufffd, sent as such\r\n".encode())
    clean.output(b"plain ascii\r\n")
    clean.close()
    assert not clean.lossy
    replaced = AsciicastWriter(tmp_path / "replaced.cast", cols=80, rows=24, title="t")
    replaced.output(b"binary \xff\r\n")
    replaced.close()
    assert replaced.lossy
    cut = AsciicastWriter(tmp_path / "cut.cast", cols=80, rows=24, title="t")
    cut.output("☃".encode()[:2])  # never finished
    cut.close()
    assert cut.lossy


def test_a_recording_never_holds_a_terminal_larger_than_the_browser_may_ask_for(tmp_path: Path) -> None:
    # Whoever hands the writer a size (the browser, the CLI proxy, a path to come), the recording stays
    # playable: asciinema-player stops at a 20000x20000 terminal.
    path = tmp_path / "huge.cast"
    writer = AsciicastWriter(path, cols=20000, rows=20000, title="t")
    writer.resize(4294967295, 0)
    writer.resize(120, 40)
    writer.close()
    header = json.loads(path.read_text().splitlines()[0])
    assert (header["width"], header["height"]) == (MAX_COLS, MAX_ROWS)
    assert [event[2] for event in _events(path)] == [f"{MAX_COLS}x1", "120x40"]


def test_c1_controls_are_written_escaped_so_the_file_itself_does_nothing_in_a_terminal(tmp_path: Path) -> None:
    # U+009B is CSI and U+009D OSC to a terminal that reads them as such: `cat terminal-1.cast` must not
    # act on what the instance printed. JSON reads the escapes back as the same characters.
    path = tmp_path / "c1.cast"
    writer = AsciicastWriter(path, cols=80, rows=24, title="t\u0085", raw=True)
    printed = "\u009b2J\u009d0;owned\u009c ok \u0080\u009f é".encode()
    writer.output(printed)
    writer.input("\u0090q\u009c".encode())
    writer.close()
    data = path.read_bytes()
    assert not any(f"{chr(code)}".encode() in data for code in range(0x80, 0xA0)), data
    assert b"\\u009b2J\\u009d0;owned\\u009c ok \\u0080\\u009f \xc3\xa9" in data
    assert json.loads(data.splitlines()[0])["title"] == "t\u0085"
    assert raw_streams(_events(path)) == {"o": printed, "i": "\u0090q\u009c".encode()}
