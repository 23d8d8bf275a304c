"""The log lines: one record, one line, whatever text from outside it quotes."""

from __future__ import annotations

import logging
import re
import traceback
from types import TracebackType

from core.text import visible

# A chunk of a formatted traceback: newlines of its layout before and after, its text between.
_LAYOUT = re.compile(r"(\n*)(.*?)(\n*)", re.DOTALL)


def visible_traceback(exc_info: tuple[type[BaseException], BaseException, TracebackType | None]) -> str:
    """The traceback as ``logging`` writes it, with every invisible or reordering character written
    as an escape (``core.text.visible``) except the newlines of the traceback's own layout: an
    exception's text (an agent's close reason, an sshd's disconnect message) stays on the line
    that names the exception, so it cannot start a line that reads as another record."""
    shown = []
    for chunk in traceback.format_exception(*exc_info):
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
