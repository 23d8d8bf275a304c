"""The log lines: one record, one line, whatever text from outside it quotes."""

from __future__ import annotations

import copy
import logging
import re
import traceback
from collections.abc import Sequence
from types import TracebackType

from core.text import visible

# A chunk of a formatted traceback: newlines of its layout before and after, its text between.
_LAYOUT = re.compile(r"(\n*)(.*?)(\n*)", re.DOTALL)


def _visible_parts(exception: traceback.TracebackException) -> None:
    """Escapes, in place, what Python lays out in a traceback's own lines but did not write itself:
    each frame's file and function names (code compiled under a name from elsewhere), a
    SyntaxError's file name and source text (whatever was parsed), and the notes, each one line.
    What is left unescaped of a chunk is then the traceback's own layout."""
    pending, seen = [exception], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        frames = []
        for frame in current.stack:
            shown = copy.copy(frame)  # the caret positions and source line kept
            shown.filename, shown.name = visible(frame.filename), visible(frame.name)
            frames.append(shown)
        current.stack = traceback.StackSummary.from_list(frames)
        if getattr(current, "filename", None) is not None:  # a SyntaxError's
            current.filename = visible(current.filename)
        if getattr(current, "text", None) is not None:
            current.text = visible(current.text.rstrip("\n"))
        notes = current.__notes__
        if isinstance(notes, Sequence) and not isinstance(notes, str):
            current.__notes__ = [visible(note) for note in notes]
        pending += [each for each in (current.__cause__, current.__context__) if each is not None]
        pending += current.exceptions or []


def visible_traceback(exc_info: tuple[type[BaseException], BaseException, TracebackType | None]) -> str:
    """The traceback as ``logging`` writes it, with every invisible or reordering character written
    as an escape (``core.text.visible``) except the newlines of the traceback's own layout: an
    exception's text (an agent's close reason, an sshd's disconnect message), a file or function
    name, a SyntaxError's source stays on its line, so it cannot start a line that reads as
    another record."""
    exception = traceback.TracebackException(*exc_info, compact=True)  # as format_exception makes it
    _visible_parts(exception)
    shown = []
    for chunk in exception.format():
        # One part each: a frame (its file and line, then the source: lines of the traceback's own
        # making), an exception's line, a note, or the words that chain two exceptions.
        before, body, after = _LAYOUT.fullmatch(chunk).groups()  # type: ignore[union-attr]
        if body.lstrip(" |").startswith('File "'):
            body = "\n".join(visible(line) for line in body.split("\n"))
        else:
            body = visible(body)
        shown.append(before + body + after)
    return "".join(shown).removesuffix("\n")


class OneLine(logging.Filter):
    """Rewrites each record's message with its control, separator and direction-changing
    characters as escapes (``core.text.visible``): a value quoted in a message (a client's field
    names, a peer's disconnect reason, a tag) cannot start a line that reads as another record,
    nor hide or reorder what is written. A traceback still follows on lines of its own, and what
    its exceptions say is escaped the same way (``visible_traceback``).

    A filter, not a formatter, so that it goes on any handler whatever its format (the web
    processes' from ``LOGGING``, Celery's own in the worker)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # arguments that do not fit the format: the handler reports it, as it always did
        shown = visible(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and record.exc_info[1] is not None:
            # Set here, the formatter writes it instead of formatting the exception itself.
            record.exc_text = visible_traceback(record.exc_info)
        return True
