"""Plain text out of an asciicast v2 recording, for searching it.

What the terminal printed (``o`` events) and what was typed (``i`` events) become two texts
with the escape sequences (colours, cursor moves, titles) removed: what was printed as the
person's terminal and the player read it (terminal.vt), nothing taken back (a backspace moves the
cursor, the screen still shows what it moved over), what was typed as a line editor reads keys
(terminal.vt) and edits its line (terminal.line_editor), so neither leaves out text someone saw or
a shell was given (``text``). One exception: a line typed at a prompt for a secret that the host did
not show back (a password with echo off) is NOT_SHOWN in the typed text and has no marker
(``echo``); so is a line whose keys the recording itself withheld (a ``w`` event, ``withhold``). Each keeps an index
of ``[offset, seconds]`` pairs, one where the text of a new event starts, so a match found in
the text can be played back from the moment it appeared. Built an event at a time, and a
recording read a chunk at a time (``TranscriptFeed``), holding the transcript, not the recording.
No Django, so a migration can use it too.
"""

from __future__ import annotations

import bisect
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terminal.line_editor import TYPED_MARK, TypedLine
from terminal.recording import clock
from terminal.transcript.echo import NOT_SHOWN, EchoJudge
from terminal.transcript.text import Cleaner, strip_escapes, typed_text
from terminal.transcript.withhold import WITHHELD

__all__ = [
    "MAX_MARKERS",
    "TRANSCRIPT_MAX_CHARS",
    "Transcript",
    "TranscriptBuilder",
    "TranscriptCut",
    "TranscriptFeed",
    "strip_escapes",
    "time_at",
    "transcript_cuts",
    "transcript_from_bytes",
    "transcript_from_events",
    "transcript_from_file",
    "typed_text",
]


@dataclass
class Transcript:
    output: str = ""
    input: str = ""
    # {"o": [[offset, seconds], ...], "i": [...]}, "commands": [[seconds, line], ...] (the first
    # MAX_MARKERS), "commands_not_shown": how many lines typed after those have no marker, and
    # "cut": {"o" or "i": {"characters": TRANSCRIPT_MAX_CHARS, "seconds": when}} for a direction
    # whose text stops there (what follows is not searched)
    index: dict[str, Any] = field(default_factory=dict)


# Text kept for search per direction: what a session prints beyond this (a binary dump, a huge log) is in the
# recording and its digest, not in the search index, which stays small enough to seal and query quickly.
TRANSCRIPT_MAX_CHARS = 8 * 2**20
# The player's markers, one per line typed: asciinema-player draws a DOM node for each and never finishes
# with tens of thousands (a pasted script, ``ssh web-1 bash < script``). The first ones are kept; the
# rest are counted (``commands_not_shown``) and stay in the typed text.
MAX_MARKERS = 1000
# A marker shows the first 80 characters of its line's typed text (of a marked line, the first 30 of
# its edited text and the rest of the mark).
MARKER_CHARS = 80
_MARKER_TEXT = 30


class TranscriptBuilder:
    """A transcript made an event at a time (``add``), each direction's text up to
    ``TRANSCRIPT_MAX_CHARS``; ``full`` once both were cut there, after which events change nothing.
    A line typed at a prompt for a secret that the host did not show back (a password at a prompt that
    does not echo, terminal.transcript.echo) is NOT_SHOWN in the typed text and has no marker: each
    typed line is held until that is known."""

    def __init__(self) -> None:
        # What was printed is never longer as text; what was typed can be, by its lines' marks.
        self._cleaners = {
            "o": Cleaner(typed=False),
            "i": Cleaner(typed=True, limit=TRANSCRIPT_MAX_CHARS, defer=True),
        }
        self._sizes = {"o": 0, "i": 0}
        # A direction with more than TRANSCRIPT_MAX_CHARS: when what is left out begins.
        self._cut: dict[str, float] = {}
        self._commands: list[list[Any]] = []
        self._commands_not_shown = 0
        self._echo = EchoJudge()
        # The typed lines held until the judge decides, in order: [line (None: still being typed),
        # seconds its Enter was typed].
        self._held: deque[list[Any]] = deque()
        # The line still being typed at the end: whether it was shown.
        self._last = True

    @property
    def full(self) -> bool:
        return len(self._cut) == len(self._sizes)

    def add(self, event: Any) -> None:
        if not isinstance(event, list) or len(event) != 3:
            return
        seconds, code, data = event
        if code == WITHHELD:  # a line's keys the recording withheld (terminal.transcript.withhold): not shown
            code, data = "i", NOT_SHOWN
        if code not in self._cleaners or not isinstance(data, str) or not isinstance(seconds, int | float):
            return
        room = TRANSCRIPT_MAX_CHARS - self._sizes[code]
        if len(data) > room and code not in self._cut:
            self._cut[code] = float(seconds)
        cleaner = self._cleaners[code]
        if room <= 0:
            if code == "o" and self._echo.waiting:  # not kept, but what it shows may be a typed line's echo
                self._echo.printed(cleaner.read(data))
                self._settle()
            return
        data = data[:room]
        typing = cleaner.editor is not None and cleaner.editor.begun
        pieces = cleaner.add(data, float(seconds))
        self._sizes[code] += len(data)
        if code == "i":
            self._typed(pieces, float(seconds), typing=typing)
        else:
            self._echo.printed("".join(pieces))
        self._settle()
        if cleaner.cut is not None:  # its text reached the limit before its keys did: read no more of it
            self._cut.setdefault(code, cleaner.cut)
            self._sizes[code] = TRANSCRIPT_MAX_CHARS

    def _typed(self, lines: list[str], seconds: float, *, typing: bool) -> None:
        """The lines an input event ended (``typing``: one was being typed before it), held for the judge."""
        typed = self._cleaners["i"]
        editor = typed.editor
        assert editor is not None
        for number, line in enumerate(lines):
            if number == 0 and typing:
                self._held[-1] = [line, seconds]
            else:
                self._held.append([line, seconds])
        if editor.begun and (lines or not typing):
            self._held.append([None, seconds])
        keys = [line.keys if isinstance(line, TypedLine) else "" for line in lines]
        self._echo.typed(keys, editor.keys if editor.begun else None)

    def _settle(self) -> None:
        """Keep the typed lines decided, in order; each one shown is a marker."""
        typed = self._cleaners["i"]
        for shown in self._echo.take():
            line, seconds = self._held.popleft()
            if line is None:  # still being typed at the end (``result``)
                self._last = shown
                continue
            typed.settle(line, seconds, shown=shown)
            if shown:
                self._mark(line, seconds)

    def _mark(self, line: str, seconds: float) -> None:
        """A line typed up to its Enter, as the typed text has it: a player's marker ("jump to the next command")."""
        typed = line.strip()
        if typed and len(self._commands) < MAX_MARKERS:
            self._commands.append([round(seconds, 3), _marker(line)])
        elif typed:
            self._commands_not_shown += 1

    def result(self) -> Transcript:
        output, typed = self._cleaners["o"], self._cleaners["i"]
        editor = typed.editor
        assert editor is not None
        typing = editor.begun
        self._typed(typed.end(), typed.seconds, typing=typing)
        self._echo.finish()
        self._settle()
        output_text, typed_text = output.text(), typed.text(shown=self._last)
        if typed.cut is not None:
            self._cut.setdefault("i", typed.cut)
        index = {
            "o": output.index,
            "i": typed.index,
            "commands": self._commands,
            "commands_not_shown": self._commands_not_shown,
        }
        if self._cut:
            index["cut"] = {
                code: {"characters": TRANSCRIPT_MAX_CHARS, "seconds": round(seconds, 3)}
                for code, seconds in self._cut.items()
            }
        return Transcript(output=output_text, input=typed_text, index=index)


def _marker(line: str) -> str:
    """A line's marker: its first MARKER_CHARS characters; for a longer line with a TYPED_MARK, the
    start of its edited text and of what was typed, so the marker shows the mark."""
    shown = line.strip()[:MARKER_CHARS]
    if len(line.strip()) <= MARKER_CHARS or not isinstance(line, TypedLine) or line.edited >= len(line):
        return shown
    text, keys = line[: line.edited].strip(), line[line.edited + len(TYPED_MARK) :]
    head = text if len(text) <= _MARKER_TEXT else text[: _MARKER_TEXT - 1] + "…"
    room = MARKER_CHARS - len(head) - len(TYPED_MARK)
    return (head + TYPED_MARK + (keys if len(keys) <= room else keys[: room - 1] + "…")).strip()


def transcript_from_events(events: Iterable[Any]) -> Transcript:
    """Build the transcript of asciicast v2 events (``[seconds, code, data]``), each direction's text
    up to ``TRANSCRIPT_MAX_CHARS``."""
    builder = TranscriptBuilder()
    for event in events:
        builder.add(event)
    return builder.result()


def transcript_from_file(path: Path) -> Transcript:
    """The transcript of a recording file, read a block at a time."""
    feed = TranscriptFeed()
    with path.open("rb") as handle:
        while block := handle.read(2**20):
            feed.feed(block)
    return feed.result()


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


@dataclass(frozen=True)
class TranscriptCut:
    """A direction whose stored text stops at TRANSCRIPT_MAX_CHARS: what followed is not searched."""

    what: str  # "printed" or "typed"
    characters: int
    seconds: float

    @property
    def at(self) -> str:
        return clock(self.seconds)


def transcript_cuts(index: Any) -> list[TranscriptCut]:
    """The cuts a stored ``transcript_index`` records (``"cut"``; none in one made before they were)."""
    cut = index.get("cut") if isinstance(index, dict) else None
    if not isinstance(cut, dict):
        return []
    found = []
    for code, what in (("o", "printed"), ("i", "typed")):
        entry = cut.get(code)
        if isinstance(entry, dict) and isinstance(entry.get("characters"), int):
            seconds = entry.get("seconds")
            found.append(
                TranscriptCut(what, entry["characters"], float(seconds) if isinstance(seconds, int | float) else 0.0)
            )
    return found


def time_at(index: list[list[float]], offset: int) -> float:
    """When the text at ``offset`` appeared, from a ``[[offset, seconds], ...]`` index."""
    if not index:
        return 0.0
    position = bisect.bisect_right([entry[0] for entry in index], offset) - 1
    return float(index[max(position, 0)][1])
