"""asciicast v2 recordings: a JSON header line, then one ``[time, code, data]`` line per event."""

from __future__ import annotations

import codecs
import json
import time
from pathlib import Path
from typing import IO, Any

from core.files import file_sha256


class AsciicastWriter:
    """Writes ``o`` (output), ``i`` (input) and ``r`` (resize) events as they happen.

    Bytes are decoded as UTF-8 incrementally per direction, so a character split across two
    reads is written whole; byte counts are of the raw bytes. The file is flushed per event so
    that what was sent is on disk even if the process dies.
    """

    def __init__(self, path: Path, *, cols: int, rows: int, title: str, env: dict[str, str] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="\n")
        self._started = time.monotonic()
        self._decoders = {
            "o": codecs.getincrementaldecoder("utf-8")(errors="replace"),
            "i": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }
        self.bytes_out = 0
        self.bytes_in = 0
        header: dict[str, Any] = {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "title": title,
            "env": env or {"TERM": "xterm-256color"},
        }
        self._write_line(header)

    def _write_line(self, value: Any) -> None:
        self._file.write(json.dumps(value, ensure_ascii=False) + "\n")
        self._file.flush()

    def _event(self, code: str, data: str) -> None:
        self._write_line([round(time.monotonic() - self._started, 6), code, data])

    def output(self, data: bytes) -> None:
        self.bytes_out += len(data)
        text = self._decoders["o"].decode(data)
        if text:
            self._event("o", text)

    def input(self, data: bytes) -> None:
        self.bytes_in += len(data)
        text = self._decoders["i"].decode(data)
        if text:
            self._event("i", text)

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def close(self) -> str:
        """Close the file; returns its SHA-256 (hex)."""
        if not self._file.closed:
            for code, decoder in self._decoders.items():
                rest = decoder.decode(b"", final=True)
                if rest:
                    self._event(code, rest)
            self._file.close()
        return file_sha256(self.path)
