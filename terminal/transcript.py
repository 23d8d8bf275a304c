"""Plain text out of an asciicast v2 recording, for searching it.

What the terminal printed (``o`` events) and what was typed (``i`` events) become two texts
with the escape sequences (colours, cursor moves, titles) removed. Each keeps an index of
``[offset, seconds]`` pairs, one where the text of a new event starts, so a match found in
the text can be played back from the moment it appeared. Built an event at a time, and a
recording read a chunk at a time (``TranscriptFeed``), holding the transcript, not the recording.
No Django, so a migration can use it too.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One token at a time: an escape sequence (dropped) or a run of ordinary text (kept).
# The stream is tokenised as if whole (_Cleaner): a sequence split across two events is one token.
_TOKEN = re.compile(
    r"""
    (?P<escape>
        \x1b\[[0-?]*[\x20-/]*[@-~]                 # CSI: colours, cursor, erase
      | \x9b[0-?]*[\x20-/]*[@-~]                   # the same, 8-bit introducer
      | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?         # OSC: window title, hyperlinks
      | \x1b[PX^_][^\x1b]*(?:\x1b\\)?              # DCS, SOS, PM, APC strings
      | \x1b[\x20-/]*[0-~]                         # two- and three-byte escapes, charsets
      | \x1b$                                      # a lone ESC at the very end
    )
    | (?P<text>[^\x1b\x9b]+)
    | (?P<other>[\x1b\x9b])
    """,
    re.VERBOSE,
)
# Control characters other than newline and tab carry no text.
_CONTROLS = re.compile(r"[\x00-\x07\x0b-\x1f\x7f]")


@dataclass
class Transcript:
    output: str = ""
    input: str = ""
    # {"o": [[offset, seconds], ...], "i": [...]}, "commands": [[seconds, line], ...] (the first
    # MAX_MARKERS) and "commands_not_shown": how many lines typed after those have no marker
    index: dict[str, Any] = field(default_factory=dict)


def strip_escapes(raw: str) -> str:
    """The text of a terminal stream, escape sequences and control characters removed."""
    cleaner = _Cleaner(typed=False)
    cleaner.add(raw, 0.0)
    return cleaner.text()


def _apply_text(chunk: str, into: list[str], *, typed: bool) -> int:
    """Append ``chunk``; returns how much longer the text became.

    Printed: a carriage return adds nothing (CRLF ends a line). Typed: Enter (CR) ends a line
    and DEL is the backspace key. A backspace removes the character before it on its line.
    """
    if typed:
        chunk = chunk.replace("\r", "\n").replace("\x7f", "\x08")
    grown = 0
    for piece in re.split(r"(\x08)", chunk):
        if piece == "\x08":
            while into and not into[-1]:
                into.pop()
            if into and into[-1][-1] != "\n":
                into[-1] = into[-1][:-1]
                grown -= 1
            continue
        piece = _CONTROLS.sub("", piece.replace("\r", ""))
        if piece:
            into.append(piece)
            grown += len(piece)
    return grown


# What is held back of one event's stream to be tokenised with the next, at most (see _Cleaner).
_HELD_MAX = 4096
# Finished lines are joined into blocks of about this many pieces (a small string costs its overhead).
_BLOCK_PIECES = 4096
# OSC and DCS/SOS/PM/APC strings: they run on (dropped) until their terminator, in whatever event.
_OSC, _DCS = "\x1b]", ("\x1bP", "\x1bX", "\x1b^", "\x1b_")


class _Cleaner:
    """One direction's stream, stripped an event at a time: its text and ``[offset, seconds]`` index,
    the same as stripping the whole stream at once (``_TOKEN`` over all of it).

    The stream is tokenised up to its last escape sequence, which is the one token that may go on in
    the next event (no token before it reaches past its start); that sequence and what follows are
    held back, up to ``_HELD_MAX`` characters (past that they are read as they are: only a control
    sequence with thousands of parameter characters, cut by an event, reads otherwise). An OSC or
    DCS string still open at the end is not held: it is dropped as it goes, to its terminator.
    Finished lines are set aside (a backspace edits only its own line), so what is held is the text,
    the line being written as a small list of pieces, and at most ``_HELD_MAX`` raw characters."""

    def __init__(self, *, typed: bool) -> None:
        self._typed = typed
        self._held = ""
        # (offset in what is held, seconds, event number) of the events whose text is held.
        self._starts: list[tuple[int, float, int]] = []
        self._events = 0
        self._last_event = -1
        self._open_string = ""  # inside an OSC ("\x1b]") or DCS-like string begun earlier
        self._line: list[str] = []
        self._done: list[str] = []
        self._blocks: list[str] = []
        self.length = 0
        self.index: list[list[float]] = []

    def add(self, data: str, seconds: float) -> None:
        self._starts.append((len(self._held), seconds, self._events))
        self._events += 1
        if self._open_string:
            data = self._string_rest(data)
            if self._open_string:
                self._starts = self._starts[-1:]
                return
        raw = self._held + data
        tokens = list(_TOKEN.finditer(raw))
        last = next((n for n in range(len(tokens) - 1, -1, -1) if tokens[n].lastgroup != "text"), None)
        cut, upto, opened = len(raw), len(tokens), ""
        if last is not None:
            token, start, ends = tokens[last].group(), tokens[last].start(), tokens[last].end() == len(raw)
            if ends and token.startswith(_OSC) and not token.endswith(("\x07", "\x1b\\")):
                upto, opened = last, _OSC
            elif ends and token.startswith(_DCS) and not token.endswith("\x1b\\"):
                upto, opened = last, _DCS[0]
            elif len(raw) - start <= _HELD_MAX:
                cut, upto = start, last
        self._strip(raw, tokens[:upto])
        self._carry(raw, cut)
        self._open_string = opened

    def _string_rest(self, data: str) -> str:
        """Drop the rest of the open string from ``data``; what follows it, if it ended."""
        ends = ("\x07", "\x1b") if self._open_string == _OSC else ("\x1b",)
        found = [position for position in (data.find(end) for end in ends) if position >= 0]
        if not found:
            return ""
        self._open_string = ""
        at = min(found)
        # BEL ends an OSC with it; ESC starts the next token (ESC \\ is dropped as an escape either way).
        return data[at + 1 :] if data[at] == "\x07" else data[at:]

    def _carry(self, raw: str, cut: int) -> None:
        """Hold ``raw[cut:]`` for the next event, with the event in effect at ``cut`` and those after."""
        offsets = [offset for offset, _, _ in self._starts]
        current = max(bisect.bisect_right(offsets, cut) - 1, 0)
        later = [(offset - cut, seconds, number) for offset, seconds, number in self._starts[current + 1 :]]
        _, seconds, number = self._starts[current]
        self._held = raw[cut:]
        self._starts = [(0, seconds, number), *later]

    def _strip(self, raw: str, tokens: list[re.Match[str]]) -> None:
        offsets = [offset for offset, _, _ in self._starts]
        for match in tokens:
            if match.lastgroup != "text":
                continue
            event = bisect.bisect_right(offsets, match.start()) - 1
            # A text run may cross event boundaries: split it there so each part keeps its time.
            stop = bisect.bisect_left(offsets, match.end(), lo=event + 1)
            boundaries = [match.start(), *offsets[event + 1 : stop], match.end()]
            for position, (begin, end) in enumerate(itertools.pairwise(boundaries)):
                _, seconds, number = self._starts[event + position]
                if number != self._last_event:
                    self.index.append([self.length, seconds])
                    self._last_event = number
                part = raw[begin:end]
                self.length += _apply_text(part, self._line, typed=self._typed)
                if "\n" in part or (self._typed and "\r" in part):
                    self._finish_lines()

    def _finish_lines(self) -> None:
        """Set aside the text up to the last newline: no backspace reaches back past it."""
        for position in range(len(self._line) - 1, -1, -1):
            piece = self._line[position]
            newline = piece.rfind("\n")
            if newline < 0:
                continue
            self._done.extend(self._line[:position])
            self._done.append(piece[: newline + 1])
            rest = self._line[position + 1 :]
            self._line = [piece[newline + 1 :], *rest] if newline + 1 < len(piece) else rest
            break
        if len(self._done) >= _BLOCK_PIECES:
            self._blocks.append("".join(self._done))
            self._done = []

    def text(self) -> str:
        """All of it: what is held read as the end of the stream."""
        self._strip(self._held, list(_TOKEN.finditer(self._held)))
        self._held, self._starts = "", self._starts[-1:]
        return "".join([*self._blocks, *self._done, *self._line])


# Text kept for search per direction: what a session prints beyond this (a binary dump, a huge log) is in the
# recording and its digest, not in the search index, which stays small enough to seal and query quickly.
TRANSCRIPT_MAX_CHARS = 8 * 2**20
# The player's markers, one per line typed: asciinema-player draws a DOM node for each and never finishes
# with tens of thousands (a pasted script, ``ssh web-1 bash < script``). The first ones are kept; the
# rest are counted (``commands_not_shown``) and stay in the typed text.
MAX_MARKERS = 1000
# A marker shows the first 80 characters of its line. Of the line being typed only this many characters
# are held (and how many follow them, so a backspace still removes the last one): a line typed or piped
# with no Enter (``ssh web-1 cat < dump``) is not held whole, and is not copied per character. A line whose
# first MARKER_LINE_MAX characters show fewer than 80 (escape sequences, blanks) is marked by what they show.
MARKER_LINE_MAX = 4096
MARKER_CHARS = 80
# What ends the line being typed (Enter) or edits it (backspace, DEL); runs between them are plain text.
_LINE_EDITS = re.compile(r"[\r\n\x7f\x08]")


class TranscriptBuilder:
    """A transcript made an event at a time (``add``), each direction's text up to
    ``TRANSCRIPT_MAX_CHARS``; ``full`` once both are, after which events change nothing."""

    def __init__(self) -> None:
        self._cleaners = {"o": _Cleaner(typed=False), "i": _Cleaner(typed=True)}
        self._sizes = {"o": 0, "i": 0}
        self._commands: list[list[Any]] = []
        self._commands_not_shown = 0
        # The start of the line being typed, a character per item (a backspace is a pop, not a copy),
        # and how many characters were typed past it.
        self._line: list[str] = []
        self._line_beyond = 0

    @property
    def full(self) -> bool:
        return all(size >= TRANSCRIPT_MAX_CHARS for size in self._sizes.values())

    def add(self, event: Any) -> None:
        if not isinstance(event, list) or len(event) != 3:
            return
        seconds, code, data = event
        if code not in self._cleaners or not isinstance(data, str) or not isinstance(seconds, int | float):
            return
        if self._sizes[code] >= TRANSCRIPT_MAX_CHARS:
            return
        data = data[: TRANSCRIPT_MAX_CHARS - self._sizes[code]]
        self._cleaners[code].add(data, float(seconds))
        self._sizes[code] += len(data)
        if code == "i":
            self._mark(data, float(seconds))

    def _mark(self, data: str, seconds: float) -> None:
        """What was typed up to each Enter: the player's markers ("jump to the next command")."""
        position = 0
        for edit in _LINE_EDITS.finditer(data):
            self._type(data[position : edit.start()])
            position = edit.end()
            if edit.group() in "\r\n":
                self._end_line(seconds)
            elif self._line_beyond:
                self._line_beyond -= 1
            elif self._line:
                self._line.pop()
        self._type(data[position:])

    def _type(self, text: str) -> None:
        room = MARKER_LINE_MAX - len(self._line)
        self._line.extend(text[:room])
        self._line_beyond += max(len(text) - room, 0)

    def _end_line(self, seconds: float) -> None:
        typed = strip_escapes("".join(self._line)).strip()
        if typed and len(self._commands) < MAX_MARKERS:
            self._commands.append([round(seconds, 3), typed[:MARKER_CHARS]])
        elif typed:
            self._commands_not_shown += 1
        self._line, self._line_beyond = [], 0

    def result(self) -> Transcript:
        output, typed = self._cleaners["o"], self._cleaners["i"]
        output_text, typed_text = output.text(), typed.text()
        index = {
            "o": output.index,
            "i": typed.index,
            "commands": self._commands,
            "commands_not_shown": self._commands_not_shown,
        }
        return Transcript(output=output_text, input=typed_text, index=index)


def transcript_from_events(events: Iterable[Any]) -> Transcript:
    """Build the transcript of asciicast v2 events (``[seconds, code, data]``), each direction's text
    up to ``TRANSCRIPT_MAX_CHARS``."""
    builder = TranscriptBuilder()
    for event in events:
        builder.add(event)
    return builder.result()


def read_events(path: Path) -> Iterable[Any]:
    """The events of an asciicast v2 file, skipping its header and any line that is not JSON."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        handle.readline()
        for line in handle:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def transcript_from_file(path: Path) -> Transcript:
    return transcript_from_events(read_events(path))


# A line of a recording longer than this is left out of its transcript (the recorder writes an event
# per read from the terminal, far shorter): a recording with no line ends is not held whole to find one.
LINE_MAX_BYTES = 8 * 2**20


class TranscriptFeed:
    """The transcript of a recording given a piece at a time (its chunks, in order), holding one line:
    the same as ``transcript_from_bytes`` of them joined. Once both directions are full the rest
    is not read."""

    def __init__(self) -> None:
        self.builder = TranscriptBuilder()
        self._tail = bytearray()
        self._header = True
        self._too_long = False  # the line being read is past LINE_MAX_BYTES: skipped to its end

    def feed(self, data: bytes) -> None:
        if self.builder.full and not self._header:
            return
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._too_long:
                self._too_long = False
                self._line(None)
            elif self._tail:
                self._tail += data[start:end]
                self._line(bytes(self._tail))
                self._tail = bytearray()
            else:
                self._line(data[start:end])
            if self.builder.full:
                return  # nothing further changes it
            start = end + 1
        if start < len(data) and not self._too_long:
            self._tail += data[start:]
            if len(self._tail) > LINE_MAX_BYTES:
                self._tail, self._too_long = bytearray(), True

    def _line(self, raw: bytes | None) -> None:
        """One line (None: one too long, skipped). "\\n" never occurs within a UTF-8 sequence, so
        decoding line by line is decoding it all."""
        if self._header:
            self._header = False
            return
        if raw is None or self.builder.full:
            return
        try:
            event = json.loads(raw.decode("utf-8", errors="replace"))
        except ValueError:
            return
        self.builder.add(event)

    def result(self) -> Transcript:
        """The transcript; what follows the last line end is read as a last line."""
        if self._too_long or self._tail:
            self._line(None if self._too_long else bytes(self._tail))
            self._tail, self._too_long = bytearray(), False
        return self.builder.result()


def transcript_from_bytes(data: bytes) -> Transcript:
    """The transcript of a whole recording (or a kept prefix of one) in memory."""
    feed = TranscriptFeed()
    feed.feed(data)
    return feed.result()


def time_at(index: list[list[float]], offset: int) -> float:
    """When the text at ``offset`` appeared, from a ``[[offset, seconds], ...]`` index."""
    if not index:
        return 0.0
    position = bisect.bisect_right([entry[0] for entry in index], offset) - 1
    return float(index[max(position, 0)][1])
