"""Text from the portal (and through it from people and the cloud), made safe to print on a terminal.

A reason, an instance Name or an error message may carry ESC sequences (CSI, OSC 52 writes
the clipboard, OSC 8 hides links), C1 controls that some terminals obey as ESC, newlines
that fake lines of output, or bidi overrides that make text read backwards. Every table and
message that shows such a value passes it through ``printable`` first.
"""

from __future__ import annotations

import unicodedata

# Controls (C0, DEL, C1), format characters (the bidi embeddings, overrides and isolates,
# zero-width characters), lone surrogates and the line/paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT_FORMS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _SHORT_FORMS:
        return _SHORT_FORMS[char]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# How much of a message from the portal is shown: enough for any real one, not a screenful of junk.
PORTAL_TEXT_LIMIT = 2000


def printable(value: object, *, keep_newlines: bool = False, limit: int | None = None) -> str:
    """``value`` as text with every control, format and separator character written as an escape (``\\x1b``).

    ``keep_newlines`` keeps ``\\n`` for messages the CLI composed over several lines itself;
    values from the portal are escaped without it, so they cannot fake a line. Backslashes are
    left as they are, which makes the function idempotent: a message may pass through it at
    several layers. With ``limit``, a longer result is cut to at most that many characters
    (never inside an escape) and ends in "…".
    """
    text = "" if value is None else str(value)
    if text.isprintable():  # the usual case; isprintable() is False for every escaped category
        return text if limit is None or len(text) <= limit else text[:limit] + "…"
    pieces = [
        char
        if (keep_newlines and char == "\n") or unicodedata.category(char) not in _ESCAPED_CATEGORIES
        else _escape(char)
        for char in text
    ]
    shown = "".join(pieces)
    if limit is None or len(shown) <= limit:
        return shown
    kept, length = [], 0
    for piece in pieces:
        length += len(piece)
        if length > limit:
            break
        kept.append(piece)
    return "".join(kept) + "…"
