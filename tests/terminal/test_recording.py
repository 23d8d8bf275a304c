from __future__ import annotations

import hashlib
import json
from pathlib import Path

from terminal.recording import AsciicastWriter


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
