"""The CLI's log lines: warnings on stderr, one line each, with what they quote escaped.

stderr is the engineer's terminal (under `passport proxy`, ssh's). The data channel's warnings
(``ssmchannel``) may quote the far end, the agent or whatever answers at the stream URL: an OSC 52
sequence written there sets the clipboard, a newline fakes a ``passport:`` line of the CLI's own.
Every record passes ``EscapedText`` before it is written, its traceback included, whatever a
message or an exception holds; a traceback keeps its own lines.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from types import TracebackType
from typing import TextIO

from passport_cli.display import printable

_LAYOUT = re.compile(r"(\n*)(.*?)(\n*)", re.DOTALL)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _escaped_parts(exception: traceback.TracebackException) -> None:
    """Escapes, in place, what Python lays out in a traceback's own lines but did not write itself:
    each frame's file and function names, a SyntaxError's file name and source text, the notes
    (each one line). What is left unescaped of a chunk is then the traceback's own layout."""
    pending, seen = [exception], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        frames = []
        for frame in current.stack:
            shown = copy.copy(frame)  # the caret positions and source line kept
            shown.filename, shown.name = printable(frame.filename), printable(frame.name)
            frames.append(shown)
        current.stack = traceback.StackSummary.from_list(frames)
        if getattr(current, "filename", None) is not None:  # a SyntaxError's
            current.filename = printable(current.filename)
        if getattr(current, "text", None) is not None:
            current.text = printable(current.text.rstrip("\n"))
        notes = current.__notes__
        if isinstance(notes, Sequence) and not isinstance(notes, str):
            current.__notes__ = [printable(note) for note in notes]
        pending += [each for each in (current.__cause__, current.__context__) if each is not None]
        pending += current.exceptions or []


def escaped_traceback(exc_info: ExcInfo) -> str:
    """The traceback as ``logging`` writes it, with every control, separator and direction-changing
    character escaped except the newlines of its own layout: an exception's text (a peer's close
    reason), a file or function name, a SyntaxError's source stays on its line."""
    exception = traceback.TracebackException(*exc_info, compact=True)  # as format_exception makes it
    _escaped_parts(exception)
    shown = []
    for chunk in exception.format():
        # A chunk is one part: a frame (its file and line, then the source, on lines of the
        # traceback's own making), an exception's line, a note, or the words that chain two.
        before, body, after = _LAYOUT.fullmatch(chunk).groups()  # type: ignore[union-attr]
        if body.lstrip(" |").startswith('File "'):
            body = "\n".join(printable(line) for line in body.split("\n"))
        else:
            body = printable(body)
        shown.append(before + body + after)
    return "".join(shown).removesuffix("\n")


class EscapedText(logging.Filter):
    """Rewrites a record's message and traceback with their control, separator and direction-changing
    characters as escapes (``passport_cli.display.printable``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # arguments that do not fit the format: the handler reports it
        shown = printable(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = escaped_traceback(record.exc_info)
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (as logging's last resort does)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self, logging.WARNING)
        self.setFormatter(logging.Formatter("passport: %(message)s"))
        self.addFilter(EscapedText())

    @property
    def stream(self) -> TextIO:
        return sys.stderr


def log_to_stderr() -> None:
    """Warnings and errors from any module (the CLI's, ssmchannel's) to stderr, escaped; once per process."""
    root = logging.getLogger()
    if not any(isinstance(handler, _StderrHandler) for handler in root.handlers):
        root.addHandler(_StderrHandler())
