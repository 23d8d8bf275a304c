"""The log lines: one record, one line, whatever text from outside it quotes."""

from __future__ import annotations

import logging

from core.text import visible


class OneLine(logging.Filter):
    """Rewrites each record's message with its control, separator and direction-changing
    characters as escapes (``core.text.visible``): a value quoted in a message (a client's field
    names, a peer's disconnect reason, a tag) cannot start a line that reads as another record,
    nor hide or reorder what is written. A traceback still follows on lines of its own.

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
        return True
