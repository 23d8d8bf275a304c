"""The text of one direction of a recording, an event at a time (terminal.transcript): what was printed
as the terminal shows it, what was typed as a line editor was given it. No Django."""

from __future__ import annotations

import re
from collections import deque

from terminal.line_editor import LineEditor
from terminal.transcript.echo import NOT_SHOWN
from terminal.vt import ScreenText, TypedText


def strip_escapes(raw: str) -> str:
    """The text of a printed stream: what the terminal shows of it, without its escape sequences
    and control characters."""
    cleaner = Cleaner(typed=False)
    cleaner.add(raw, 0.0)
    return cleaner.text()


def typed_text(raw: str) -> str:
    """The text of a typed stream: the lines a line editor was given (terminal.line_editor), without
    the keys that send sequences."""
    cleaner = Cleaner(typed=True)
    cleaner.add(raw, 0.0)
    return cleaner.text()


# Control characters other than newline and tab carry no printed text: a backspace moves the
# cursor and deletes nothing, so what it moves back over stays in the text, as on the screen.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Finished pieces are joined into blocks of about this many (a small string costs its overhead).
_BLOCK_PIECES = 4096


class Cleaner:
    """One direction's stream, stripped an event at a time: its text and ``[offset, seconds]`` index,
    the same text as stripping the whole stream at once, wherever events cut it.

    The stream is read by terminal.vt (``ScreenText`` printed, ``TypedText`` typed), which holds only
    its parser's state, so an escape sequence or string cut by an event goes on in the next one and
    ends where the terminal ends it. What was printed is kept as it came, nothing taken back (a
    backspace or carriage return moves the cursor over text the screen still shows); what was typed
    is read a line at a time by terminal.line_editor, which holds only the line being typed."""

    def __init__(self, *, typed: bool, limit: int | None = None, defer: bool = False) -> None:
        self._limit = limit  # the most text kept (what was typed, with its marks, can be longer than its keys)
        self.cut: float | None = None  # when text past the limit was left out
        self._reader: ScreenText | TypedText = TypedText() if typed else ScreenText()
        self._editor = LineEditor() if typed else None
        # Typed lines ended are held until ``settle`` keeps them (or NOT_SHOWN), in order: their length.
        self._defer = defer
        self._pending = 0
        # Their index entries, and the line still being typed's, kept aside until it is settled, each at
        # its offset as though every line were kept as typed: ``_moved`` is what the lines left out so far
        # added to that (settling a line touches only its own entries).
        self._aside: deque[list[float]] = deque()
        self._moved = 0
        self._seconds = 0.0
        self._indexed = True  # the current event's text has its index entry
        self._done: list[str] = []
        self._blocks: list[str] = []
        self._finished = 0  # the length of what is in _done and _blocks
        self.index: list[list[float]] = []

    @property
    def length(self) -> int:
        return self._finished + self._pending + (self._editor.length if self._editor else 0)

    @property
    def editor(self) -> LineEditor | None:
        return self._editor

    @property
    def seconds(self) -> float:
        """When the last event read began."""
        return self._seconds

    def add(self, data: str, seconds: float) -> list[str]:
        """Read ``data``; returns the lines typed it ended (of what was printed, its text)."""
        self._seconds, self._indexed = seconds, False
        return self._append(self._reader.feed(data))

    def read(self, data: str) -> str:
        """The text of what was printed in ``data``, read but not kept (past the limit)."""
        return _NOT_TEXT.sub("", self._reader.feed(data).replace("\r", ""))

    def _append(self, text: str) -> list[str]:
        if not text:
            return []
        if not self._indexed:
            if self._defer and (self.length > self._finished or self._aside):  # within a line not yet settled
                self._aside.append([self.length - self._moved, self._seconds])
            else:
                self.index.append([self.length, self._seconds])
            self._indexed = True
        if self._editor is None:
            printed = _NOT_TEXT.sub("", text.replace("\r", ""))
            self._keep(printed)
            return [printed]
        lines = self._editor.feed(text)
        for line in lines:
            if self._defer:
                self._pending += len(line) + 1
            else:
                self._keep(line + "\n")
        return lines

    def settle(self, line: str, seconds: float, *, shown: bool) -> None:
        """Keep a line held back (``defer``), the first of them: as typed, or as NOT_SHOWN when the host
        did not show it."""
        self._pending -= len(line) + 1
        self._index_line(len(line) + 1, None if shown else len(NOT_SHOWN) + 1)
        if not shown:
            line = NOT_SHOWN
        now, self._seconds = self._seconds, seconds  # a cut there is the line's
        self._keep(line + "\n")
        self._seconds = now
        while self._aside and self._aside[0][0] + self._moved <= self._finished:  # the next line's start
            offset, entry_seconds = self._aside.popleft()
            self.index.append([offset + self._moved, entry_seconds])

    def _index_line(self, length: int, instead: int | None) -> None:
        """The index entries kept aside within the first ``length`` characters not yet kept, into the
        index; ``instead``: that many characters replace them, and only an entry at their start is kept."""
        start = self._finished - self._moved  # where the line starts, as the entries aside count
        while self._aside and self._aside[0][0] < start + length:
            offset, entry_seconds = self._aside.popleft()
            if instead is None or offset <= start:
                self.index.append([offset + self._moved, entry_seconds])
        if instead is not None:
            self._moved += instead - length

    def _keep(self, text: str) -> None:
        text = self._within_limit(text)
        if not text:
            return
        self._done.append(text)
        self._finished += len(text)
        if len(self._done) >= _BLOCK_PIECES:
            self._blocks.append("".join(self._done))
            self._done = []

    def end(self) -> list[str]:
        """What the reader still holds, read as the end of the stream: the lines typed it ends."""
        return self._append(self._reader.end()) if isinstance(self._reader, TypedText) else []

    def text(self, *, shown: bool = True) -> str:
        """All of it, after ``end`` (done here unless lines are held back); ``shown`` False: the line still
        being typed is NOT_SHOWN."""
        if not self._defer:
            self.end()
        line = self._editor.text() if self._editor else ""
        self._index_line(len(line), None if shown or not line else len(NOT_SHOWN))
        if not shown and line:
            line = NOT_SHOWN
        self.index.extend([offset + self._moved, entry_seconds] for offset, entry_seconds in self._aside)
        self._aside.clear()
        line = self._within_limit(line)
        return "".join([*self._blocks, *self._done, line])

    def _within_limit(self, text: str) -> str:
        if self._limit is not None and self._finished + len(text) > self._limit:
            if self.cut is None:
                self.cut = self._seconds
            return text[: max(self._limit - self._finished, 0)]
        return text
