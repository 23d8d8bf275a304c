"""What was typed: the keys a terminal sent, for a transcript (terminal.vt).

What was typed is read as a line editor reads keys (bash's readline; terminal.line_editor edits the
line): a terminal sends no strings, so ESC ] (or ESC P, X, ^, _) is one key, Alt and a character,
and what follows is typed text, as readline inserts it. Each key sent as a sequence (cursor and
function keys, Alt and a character, bracketed paste's marks, a terminal's answers: readline reads
those too) is passed on as one token, which marks its line; whatever else follows ESC [ is typed
text after its ESC [, since readline inserts what follows the point where it stops matching a key.

``TypedText`` is fed a piece at a time and holds only an unfinished sequence.
"""

from __future__ import annotations

import re

# The CSI sequences a terminal sends as keys or answers, after ESC [ (xterm.js, and the terminals
# ssh clients run in): dropped from the typed text. Only digits and ";" before their final byte.
_KEY_SEQUENCE = re.compile(
    r"""
      (?:1;[0-9]{1,3})?[A-HPQRSZ]          # cursor keys, Home, End, F1 to F4, Shift+Tab (with modifiers)
    | [0-9]{1,3}(?:;[0-9]{1,3})?~          # editing and function keys, bracketed paste's marks
    | [IOM]                                # focus in and out; a mouse report (its 3 bytes are typed text)
    | <[0-9]{1,4};[0-9]{1,5};[0-9]{1,5}[Mm]  # a mouse report (SGR)
    | [0-9]{1,5};[0-9]{1,5}R               # the cursor position
    | \?[0-9]{1,5};[0-9]{1,5}R
    | [?>][0-9;]{0,40}c                    # device attributes
    | \??[0-9]{1,5};[0-9]\$y               # a mode's state
    | [03]n                                # the terminal's status
    | [0-9]{1,2};[0-9]{1,5};[0-9]{1,5}t    # window and cell sizes
    """,
    re.VERBOSE,
)
# Left, Right, Home, End, Delete (after ESC [; ESC O too for the first four) as the control keys
# readline's emacs mode binds to the same, which terminal.line_editor edits the line with.
_EDITING_KEYS = {"D": "\x02", "C": "\x06", "H": "\x01", "F": "\x05", "1~": "\x01", "7~": "\x01", "4~": "\x05"}
_EDITING_KEYS |= {"8~": "\x05", "3~": "\x04"}
# How many characters after ESC [ are read as one sequence: past this it is typed text.
_KEY_SEQUENCE_MAX = 48
# A key sent as a sequence goes to the line editor as KEY, the control key readline binds to its
# action (Left Ctrl-B, ...; NO_EDIT for the others), what followed its ESC (printable ASCII: "[15~",
# "OP", "b" for Alt-B, "" for ESC alone) and KEY again. No other ESC is passed on.
KEY, NO_EDIT = "\x1b", "\x00"


def _key(edit: str, sent: str) -> str:
    return KEY + edit + sent + KEY


_TYPED, _TYPED_ESCAPE, _TYPED_SS3, _TYPED_CSI = range(4)


class TypedText:
    """The keys typed, a piece at a time (``feed``; ``end`` once it is all given): text and control
    keys as they are, each key sent as a sequence as a ``KEY`` token. Nothing is held but an
    unfinished ESC [ sequence, at most ``_KEY_SEQUENCE_MAX``."""

    def __init__(self) -> None:
        self._state = _TYPED
        self._sequence = ""

    @property
    def idle(self) -> bool:
        """Whether no escape sequence is begun: what comes next is read from its first character."""
        return self._state == _TYPED

    def feed(self, data: str) -> str:
        typed: list[str] = []
        position, end = 0, len(data)
        while position < end:
            if self._state == _TYPED:
                escape = data.find("\x1b", position)
                typed.append(data[position:] if escape < 0 else data[position:escape])
                if escape < 0:
                    break
                self._state, position = _TYPED_ESCAPE, escape + 1
                continue
            character = data[position]
            code = ord(character)
            if self._state == _TYPED_ESCAPE:
                # ESC [ and ESC O start keys; ESC and a printable character is Alt and that key; ESC
                # before another ESC or a control is ESC alone (the control is typed as it is).
                if character == "[":
                    self._state, self._sequence = _TYPED_CSI, ""
                elif character == "O":
                    self._state = _TYPED_SS3
                elif character == "\x1b":
                    typed.append(_key(NO_EDIT, ""))
                else:
                    self._state = _TYPED
                    if not 0x20 <= code <= 0x7E:
                        typed.append(_key(NO_EDIT, ""))
                        continue
                    typed.append(_key(NO_EDIT, character))
                position += 1
            elif self._state == _TYPED_SS3:
                self._state = _TYPED
                if 0x20 <= code <= 0x7E:
                    position += 1
                    typed.append(_key(_EDITING_KEYS.get(character, NO_EDIT), "O" + character))
                else:
                    typed.append(_key(NO_EDIT, "O"))
            elif 0x20 <= code <= 0x3F and len(self._sequence) < _KEY_SEQUENCE_MAX:
                self._sequence += character
                position += 1
            elif 0x40 <= code <= 0x7E:
                key = self._sequence + character
                if key in _EDITING_KEYS:
                    typed.append(_key(_EDITING_KEYS[key], "[" + key))
                elif _KEY_SEQUENCE.fullmatch(key):
                    typed.append(_key(NO_EDIT, "[" + key))
                else:
                    typed.append(_key(NO_EDIT, "[") + key)
                self._state, self._sequence = _TYPED, ""
                position += 1
            else:
                # Not a sequence a terminal sends: what followed ESC [ is typed text.
                typed.append(_key(NO_EDIT, "[") + self._sequence)
                self._state, self._sequence = _TYPED, ""
        return "".join(typed)

    def end(self) -> str:
        """What is still held, read as the end of what was typed."""
        held = {_TYPED_ESCAPE: _key(NO_EDIT, ""), _TYPED_SS3: _key(NO_EDIT, "O")}
        rest = _key(NO_EDIT, "[") + self._sequence if self._state == _TYPED_CSI else held.get(self._state, "")
        self._state, self._sequence = _TYPED, ""
        return rest
