"""The text of one direction of a recording, an event at a time (terminal.transcript): what was printed
as the terminal shows it, what was typed as a line editor was given it. No Django."""

from __future__ import annotations

import re

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

    def settle(self, line: str, seconds: float, *, shown: bool, mark: int) -> None:
        """Keep a line held back (``defer``), the first of them: as typed, or as NOT_SHOWN when the host
        did not show it; ``mark``: how many index entries there were when it began."""
        self._pending -= len(line) + 1
        if not shown:
            self._left_out(len(line) + 1, len(NOT_SHOWN) + 1, mark)
            line = NOT_SHOWN
        now, self._seconds = self._seconds, seconds  # a cut there is the line's
        self._keep(line + "\n")
        self._seconds = now

    def _left_out(self, length: int, instead: int, mark: int) -> None:
        """The index, for ``length`` characters starting at the end of what is kept replaced by ``instead``:
        the entries since ``mark`` within them dropped, those after moved."""
        start = self._finished
        later = self.index[mark:]
        del self.index[mark:]
        for offset, seconds in later:
            if offset <= start:
                self.index.append([offset, seconds])
            elif offset >= start + length:
                self.index.append([offset - length + instead, seconds])

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

    def text(self, *, shown: bool = True, mark: int = 0) -> str:
        """All of it, after ``end`` (done here unless lines are held back); ``shown`` False: the line still
        being typed, begun at index entry ``mark``, is NOT_SHOWN."""
        if not self._defer:
            self.end()
        line = self._editor.text() if self._editor else ""
        if not shown and line:
            self._left_out(len(line), len(NOT_SHOWN), mark)
            line = NOT_SHOWN
        line = self._within_limit(line)
        return "".join([*self._blocks, *self._done, line])

    def _within_limit(self, text: str) -> str:
        if self._limit is not None and self._finished + len(text) > self._limit:
            if self.cut is None:
                self.cut = self._seconds
            return text[: max(self._limit - self._finished, 0)]
        return text
