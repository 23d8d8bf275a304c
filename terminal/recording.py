"""asciicast v2 recordings: a JSON header line, then one ``[time, code, data]`` line per event."""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol, cast

from terminal.frames import bounded_size

# A raw-bytes event (``raw=True`` recordings): ``[time, "b", "<o|i>:<base64>"]``, written just before the
# ``o``/``i`` event that shows those bytes decoded with U+FFFD. Players and transcripts skip the code.
RAW = "b"
# Keys withheld (typed at a prompt for a secret the host did not show back) are a ``[time, "w", "<bytes>"]``
# event in their place, written by the writer's gate (terminal.transcript.withhold); players skip it too.
REPLACEMENT = "\ufffd"


# C1 controls (U+0080-U+009F; U+009B is CSI, U+009D OSC to a terminal that reads 8-bit controls): JSON
# lets them stand as they are; written escaped instead, so ``cat`` of a .cast file cannot act on them.
_C1 = re.compile("[\u0080-\u009f]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


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


class InputGate(Protocol):
    """What stands between the writer and its sink, holding events back (terminal.transcript.withhold: keys
    typed at a prompt for a secret that the host did not show back are withheld)."""

    withheld_bytes: int
    withheld_lines: int

    def attach(self, emit: Callable[[float, str, str], None]) -> None: ...

    def event(self, seconds: float, code: str, text: str) -> None: ...

    def close(self) -> None: ...


class AsciicastWriter:
    """Writes ``o`` (output), ``i`` (input) and ``r`` (resize) events as they happen.

    Bytes are decoded as UTF-8 incrementally per direction, so a character split across two
    reads is written whole; byte counts are of the raw bytes. What is not UTF-8 is shown as U+FFFD:
    with ``raw=True`` (a command's stdin and output, which may be any bytes) those bytes are also
    written as they were, base64 in a ``b`` event before the one that shows them, so the exact
    stream can be read back (``raw_streams``); without it (a terminal's, where the cost of every
    line counts) ``lossy`` says that some bytes were replaced. Each event is handed to the sink
    as one whole line (a local file flushes it; terminal.chunks uploads it within seconds), and
    the SHA-256 of everything written is kept as it goes (by the sink itself when it hashes what
    it keeps, as terminal.chunks does in its upload thread: one pass over the bytes, not two).

    With a ``gate`` every ``o``, ``i`` and ``r`` event goes through it, and is written when it lets it go,
    with its own time (or, for keys it withholds, a ``w`` event instead); ``input_written`` is then told
    the bytes of each ``i`` event written.
    """

    def __init__(
        self,
        target: Path | Sink,
        *,
        cols: int,
        rows: int,
        title: str,
        env: dict[str, str] | None = None,
        raw: bool = False,
        gate: InputGate | None = None,
    ) -> None:
        self.sink: Sink = FileSink(target) if isinstance(target, Path) else target
        self._sha256 = None if callable(getattr(self.sink, "digest", None)) else hashlib.sha256()
        self._closed = False
        self._started = time.monotonic()
        self.raw = raw
        errors = "surrogateescape" if raw else "replace"
        self._decoders = {
            "o": codecs.getincrementaldecoder("utf-8")(errors=errors),
            "i": codecs.getincrementaldecoder("utf-8")(errors=errors),
        }
        # Bytes that were not UTF-8 were shown as U+FFFD and are not kept otherwise (``raw`` False).
        self.lossy = False
        # How many ``b`` events keep bytes that are not UTF-8 (``raw`` True).
        self.raw_events = 0
        self.bytes_out = 0
        self.bytes_in = 0
        # Bounded here too, whoever asked for the size: a larger terminal makes the recording unplayable.
        width, height = bounded_size(cols, rows)
        header: dict[str, Any] = {
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": int(time.time()),
            "title": title,
            "env": env if env is not None else {"TERM": "xterm-256color"},
        }
        self._write_line(header)
        self._gate = gate
        self._withheld = (0, 0)  # (bytes, lines) withheld by a gate taken off (``withhold_off``)
        self.input_written: Callable[[bytes], None] | None = None
        if gate is not None:
            gate.attach(self._written)

    def _write_line(self, value: Any, seconds: float = 0.0) -> None:
        line = json.dumps(value, ensure_ascii=False)
        if not line.isascii():  # constant time in CPython: most lines cost nothing more
            line = _C1.sub(_escaped, line)
        data = (line + "\n").encode("utf-8")
        if self._sha256 is not None:
            self._sha256.update(data)
        self.sink.write(data, seconds)

    @property
    def seconds(self) -> float:
        """Seconds since the recording started."""
        return round(time.monotonic() - self._started, 6)

    def _event(self, code: str, data: str) -> None:
        seconds = self.seconds
        if self._gate is not None and code in ("o", "i", "r"):
            self._gate.event(seconds, code, data)
        else:
            self._written(seconds, code, data)

    def _written(self, seconds: float, code: str, text: str) -> None:
        """One event as written: an ``o`` or ``i`` event's text not UTF-8 kept first (``raw``)."""
        if code == "i" and self.input_written is not None:
            self.input_written(text.encode("utf-8", "surrogateescape"))
        if self.raw and code in ("o", "i") and not text.isascii():
            self._raw_text(seconds, code, text)
        else:
            self._write_line([seconds, code, text], seconds)

    def output(self, data: bytes) -> None:
        self.bytes_out += len(data)
        text = self._decoders["o"].decode(data)
        if text:
            self._text("o", text, data)

    def input(self, data: bytes) -> None:
        self.bytes_in += len(data)
        text = self._decoders["i"].decode(data)
        if text:
            self._text("i", text, data)

    def _text(self, code: str, text: str, data: bytes) -> None:
        # U+FFFD in the text and not as many in the bytes: the decoder replaced something. (A U+FFFD
        # sent split across two reads also counts: lossy errs on the side of saying so.) isascii() is
        # constant time in CPython: most output costs nothing more.
        if (
            not self.raw
            and not self.lossy
            and not text.isascii()
            and REPLACEMENT in text
            and text.count(REPLACEMENT) > data.count(b"\xef\xbf\xbd")
        ):
            self.lossy = True
        self._event(code, text)

    def _raw_text(self, seconds: float, code: str, text: str) -> None:
        """``text`` decoded with surrogateescape: clean UTF-8 as it is, otherwise its bytes first."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "surrogateescape")
            self.raw_events += 1
            self._write_line([seconds, RAW, f"{code}:{base64.b64encode(data).decode('ascii')}"], seconds)
            text = data.decode("utf-8", "replace")
        self._write_line([seconds, code, text], seconds)

    def withhold_off(self) -> None:
        """Write every event from here on as it comes (a file transfer's stream), whatever the gate holds first."""
        if self._gate is not None:
            self._gate.close()
            self._withheld = (self._gate.withheld_bytes, self._gate.withheld_lines)
            self._gate, self.input_written = None, None

    @property
    def withheld_bytes(self) -> int:
        """Bytes typed that the recording withholds (the gate's), of ``withheld_lines`` lines."""
        return self._gate.withheld_bytes if self._gate is not None else self._withheld[0]

    @property
    def withheld_lines(self) -> int:
        return self._gate.withheld_lines if self._gate is not None else self._withheld[1]

    def resize(self, cols: int, rows: int) -> None:
        cols, rows = bounded_size(cols, rows)
        self._event("r", f"{cols}x{rows}")

    def close(self) -> str:
        """Close the sink (blocking: an upload may finish); returns the SHA-256 (hex) of all written
        (for a sink that hashes itself, of all it kept: the same unless storing failed)."""
        if not self._closed:
            self._closed = True
            for code, decoder in self._decoders.items():
                rest = decoder.decode(b"", final=True)
                if rest:
                    self._text(code, rest, b"")
            if self._gate is not None:
                self._gate.close()
            self.sink.close()
        if self._sha256 is None:
            return cast(DigestingSink, self.sink).digest()
        return self._sha256.hexdigest()


def raw_streams(events: Any) -> dict[str, bytes]:
    """The exact bytes each way (``"o"``, ``"i"``) of a recording's events (``[time, code, data]``,
    the header left out): each ``o``/``i`` event's text as UTF-8, or the bytes of the ``b`` event
    just before it when there is one. Exact for a ``raw=True`` recording."""
    streams = {"o": bytearray(), "i": bytearray()}
    pending: dict[str, bytes | None] = {"o": None, "i": None}
    for event in events:
        if not isinstance(event, list) or len(event) != 3 or not isinstance(event[2], str):
            continue
        code, data = event[1], event[2]
        if code == RAW and data[:2] in ("o:", "i:"):
            try:
                pending[data[0]] = base64.b64decode(data[2:], validate=True)
            except (binascii.Error, ValueError):
                continue
        elif code in streams:
            held, pending[code] = pending[code], None
            streams[code] += held if held is not None else data.encode("utf-8", "surrogatepass")
    return {code: bytes(stream) for code, stream in streams.items()}
