"""Free text from people (reasons, notes): what may not be in it.

A reason is shown in HTML, in emails, in the Logbook and its exports, and printed by the CLI in
someone's terminal. Each of those escapes in its own way, but characters that only serve to hide or
reorder text (terminal escapes and other control characters, bidi overrides and isolates, line and
paragraph separators) have no business in a reason at all: they are refused where the text comes in,
with a message that names them. Newlines and tabs stay; so do joiners (emoji, Persian, Indic scripts).
"""

from __future__ import annotations

import re
import unicodedata

# Also refused: zero-width space, word joiner and the invisible operators, the byte-order mark,
# and the tag characters (U+E0000-E007F), which can carry a whole line of text no one sees.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064"
    "\u2066-\u2069\ufeff\ud800-\udfff\U000e0000-\U000e007f]"
)


def unsafe_characters(text: str) -> list[str]:
    """The distinct characters of ``text`` that are refused, as ``U+XXXX`` in order of appearance."""
    seen: dict[str, None] = {}
    for match in _UNSAFE.finditer(text):
        seen.setdefault(f"U+{ord(match.group()):04X}", None)
    return list(seen)


def without_unsafe_characters(text: str) -> str:
    """``text`` with the refused characters left out: for values from elsewhere (an identity
    provider's names) that are taken as they come rather than refused."""
    return _UNSAFE.sub("", text)


def unsafe_text_message(what: str, text: str) -> str | None:
    """A form error for ``text`` if it holds refused characters, else None."""
    found = unsafe_characters(text)
    if not found:
        return None
    listed = ", ".join(found[:5]) + (" …" if len(found) > 5 else "")
    return f"{what} contains control or direction-changing characters ({listed}); type it as plain text."


# Control, format (bidi overrides, zero-width), separator and surrogate characters.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def visible(value: object, *, keep: str = "") -> str:
    """``value`` as text with every invisible or reordering character written as ``\\xNN`` or
    ``\\uNNNN``, so what a reviewer reads is what is there (HTML escaping stays the template's).
    ``keep``: characters left as they are (newlines and tabs, for a block of output)."""
    return "".join(
        char if unicodedata.category(char) not in _HIDDEN_CATEGORIES or char in keep else _escaped(char)
        for char in str(value)
    )


def _escaped(char: str) -> str:
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


# What PostgreSQL cannot store in text or jsonb: NUL, and surrogates (no UTF-8 holds them; a pair of
# them as two code points would come back from jsonb as the one character they encode).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with NUL and surrogates written as ``visible`` writes them (``\\x00``, ``\\ud800``):
    for a record that must be kept whatever it quotes (a Logbook entry's detail)."""
    return _UNSTORABLE.sub(lambda match: _escaped(match.group()), text)


# Marks where quoted text was cut.
TRUNCATED = "...[truncated]"


def visible_excerpt(value: object, limit: int) -> str:
    """``visible(value)`` in at most ``limit`` characters, marked with TRUNCATED where cut: text from
    elsewhere (a host's refusal, a far end's reason) quoted in a record, not a copy of whatever it sent.
    Only the first ``limit`` characters are escaped, so a huge value costs no more than a short one."""
    text = str(value)
    shown = visible(text[:limit])
    if len(text) > limit or len(shown) > limit:
        return shown[:limit] + TRUNCATED
    return shown
