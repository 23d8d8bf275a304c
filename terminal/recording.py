"""asciicast v2 recordings: a JSON header line, then one ``[time, code, data]`` line per event."""

from __future__ import annotations

import codecs
import hashlib
import json
import time
from pathlib import Path
from typing import IO, Any, Protocol, cast


def clock(seconds: float) -> str:
    """Seconds into a recording as H:MM:SS."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class Sink(Protocol):
    """Where the lines of a recording go: whole lines, each with the time of its event."""

    def write(self, data: bytes, seconds: float) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """A local file, flushed per line (a single host's copy, and the benchmarks' baseline)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] = path.open("wb")

    def write(self, data: bytes, seconds: float) -> None:
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class DigestingSink(Sink, Protocol):
    """A sink that hashes what it keeps itself (terminal.chunks, off the event loop): the writer
    then does not hash every line a second time on the event loop."""

    def digest(self) -> str: ...


class NullSink:
    """Keeps nothing: a terminal allowed to run unrecorded (the Logbook says so)."""

    def write(self, data: bytes, seconds: float) -> None:
        return None

    def close(self) -> None:
        return None


class AsciicastWriter:
    """Writes ``o`` (output), ``i`` (input) and ``r`` (resize) events as they happen.

    Bytes are decoded as UTF-8 incrementally per direction, so a character split across two
    reads is written whole; byte counts are of the raw bytes. Each event is handed to the sink
    as one whole line (a local file flushes it; terminal.chunks uploads it within seconds), and
    the SHA-256 of everything written is kept as it goes (by the sink itself when it hashes what
    it keeps, as terminal.chunks does in its upload thread: one pass over the bytes, not two).
    """

    def __init__(
        self, target: Path | Sink, *, cols: int, rows: int, title: str, env: dict[str, str] | None = None
    ) -> None:
        self.sink: Sink = FileSink(target) if isinstance(target, Path) else target
        self._sha256 = None if callable(getattr(self.sink, "digest", None)) else hashlib.sha256()
        self._closed = False
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

    def _write_line(self, value: Any, seconds: float = 0.0) -> None:
        data = (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")
        if self._sha256 is not None:
            self._sha256.update(data)
        self.sink.write(data, seconds)

    @property
    def seconds(self) -> float:
        """Seconds since the recording started."""
        return round(time.monotonic() - self._started, 6)

    def _event(self, code: str, data: str) -> None:
        seconds = self.seconds
        self._write_line([seconds, code, data], seconds)

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
        """Close the sink (blocking: an upload may finish); returns the SHA-256 (hex) of all written
        (for a sink that hashes itself, of all it kept: the same unless storing failed)."""
        if not self._closed:
            self._closed = True
            for code, decoder in self._decoders.items():
                rest = decoder.decode(b"", final=True)
                if rest:
                    self._event(code, rest)
            self.sink.close()
        if self._sha256 is None:
            return cast(DigestingSink, self.sink).digest()
        return self._sha256.hexdigest()
