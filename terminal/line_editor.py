"""The lines typed in a terminal session, for its transcript (terminal.transcript): what a line editor
was given between Enters.

The keys come from terminal.vt (``TypedText``): characters, the control keys, and each key that sends
an escape sequence as a ``KEY`` token, with the control character readline's emacs mode binds to the
same action for those that edit a line (Left is Ctrl-B, Home Ctrl-A, Delete Ctrl-D, ...). The line
is edited as readline edits it, with a cursor: Left/Right, Home/End, Ctrl-A/B/E/F move it; Backspace
(DEL, Ctrl-H) deletes the character before it and nothing at the start of the line; Ctrl-D deletes
the one under it; Ctrl-U, Ctrl-K and Ctrl-W kill to the start, to the end and the word before it.

Which editor read the keys, with which bindings, is not known (``bind``, vi mode, ``stty erase``, a
program reading the terminal in canonical mode where Left is three characters), and readline has
keys this does not follow (Alt-B, Ctrl-T, an unbound function key, whose last characters it
inserts), so the edited text is only a reconstruction: a line on which anything but text was typed
(any control character but its Enter, any key or answer sent as an escape sequence) is followed by
every key typed on it, in order, nothing deleted (``  # typed: ...``), the text as typed and the
other keys as placeholders: ``⟨^T⟩`` for a control character (``⟨^?⟩`` DEL), ``⟨M-b⟩`` for Alt and
a character, ``⟨ESC[15~⟩`` for a sequence (as sent, after its ESC), ``⟨ESC⟩`` for ESC alone. A
command that ran is in its line either way, its characters in the order they were typed.

A line longer than ``LINE_EDIT_MAX`` is no longer edited at a cursor (the cursor keys are left out
and what is typed is added at its end) so that each key costs a bounded amount; a line with a key
other than text is marked anyway. No Django.
"""

from __future__ import annotations

import re

from terminal.vt import KEY, NO_EDIT

# Past this many characters a line is written at its end only (see above).
LINE_EDIT_MAX = 4096
# The pieces a long line is held in are at most this long, so that a backspace copies little.
_PIECE_MAX = 256
# Between the line as edited and every key typed on it, when anything but text was typed.
TYPED_MARK = "  # typed: "
# A line's ``keys``: the first this many characters typed on it as text (terminal.transcript.echo
# looks for them in what was printed).
ECHO_KEYS = 64

_BEGINNING, _BACK, _DELETE, _END, _FORWARD, _BACKSPACE, _KILL, _DISCARD, _QUOTE, _RUBOUT, _WORD = (
    "\x01",
    "\x02",
    "\x04",
    "\x05",
    "\x06",
    "\x08",
    "\x0b",
    "\x15",
    "\x16",
    "\x7f",
    "\x17",
)
# A run of characters inserted as they are: everything but the controls (tab is text).
_PLAIN = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]+")
# A KEY token's placeholder, by the start of what followed its ESC.
_SEQUENCES = ("[", "O")
# A KEY token is at most this long (terminal.vt reads at most 48 characters after ESC [).
_TOKEN_MAX = 64


class TypedLine(str):
    """A line's text as ``LineEditor`` returns it; ``edited`` is the length of its edited text (before
    any TYPED_MARK), so its mark is found without searching what was typed."""

    edited: int
    keys: str  # the first ECHO_KEYS characters typed on it as text, but Tab (what an echo shows of it)

    def __new__(cls, text: str, edited: int, keys: str = "") -> TypedLine:
        line = super().__new__(cls, text)
        line.edited = edited
        line.keys = keys
        return line


def _control(key: str) -> str:
    return "⟨^?⟩" if key == "\x7f" else f"⟨^{chr(ord(key) + 64)}⟩"


def _placeholder(sent: str) -> str:
    if not sent:
        return "⟨ESC⟩"
    return f"⟨ESC{sent}⟩" if sent.startswith(_SEQUENCES) else f"⟨M-{sent}⟩"


_MOTIONS = (_BEGINNING, _BACK, _END, _FORWARD)


class LineEditor:
    """The line being typed (``feed``), and the lines ended by Enter (CR or LF), which ``feed`` returns
    as their text. ``length`` is how long the line's text is now, ``keys`` the first ECHO_KEYS characters
    typed on it as text but Tab, ``begun`` whether any key was typed on it."""

    def __init__(self) -> None:
        self._begin()

    def _begin(self) -> None:
        self._line: list[str] = []  # a character per item while the line is edited at a cursor
        self._cursor = 0
        self._tail: list[str] = []  # pieces added at the end once the line is longer than LINE_EDIT_MAX
        self._tail_length = 0
        self._typed: list[str] = []  # every key typed on the line, in order, nothing deleted
        self._marked = False  # a key other than text was typed on it
        self._quoted = False  # after Ctrl-V (quoted-insert): the next key is inserted, not acted on
        self.keys = ""

    @property
    def length(self) -> int:
        return len(self._line) + self._tail_length

    @property
    def begun(self) -> bool:
        return bool(self._typed)

    def feed(self, keys: str) -> list[str]:
        ended: list[str] = []
        position, end = 0, len(keys)
        while position < end:
            if plain := _PLAIN.match(keys, position):
                self._insert(plain.group())
                position = plain.end()
                self._quoted = False
                continue
            key = keys[position]
            position += 1
            if key in "\r\n" and not self._quoted:
                ended.append(self.take())
                continue
            self._marked = True
            close = keys.find(KEY, position + 1, position + _TOKEN_MAX) if key == KEY else -1
            if close >= 0:  # a KEY token: the control it edits as, what followed its ESC
                key, sent, position = keys[position], keys[position + 1 : close], close + 1
                self._typed.append(_placeholder(sent))
            else:
                self._typed.append(_control(key))
            if self._quoted:
                self._quoted = False  # a control inserted as it is: no text, and no edit
            elif key != NO_EDIT:
                self._edit(key)
        return ended

    def text(self) -> TypedLine:
        """The line's text so far."""
        text = "".join(self._line) + "".join(self._tail)
        if not self._marked:
            return TypedLine(text, len(text), self.keys)
        return TypedLine(text + TYPED_MARK + "".join(self._typed), len(text), self.keys)

    def take(self) -> TypedLine:
        """The line's text, and a new line begun."""
        text = self.text()
        self._begin()
        return text

    def _insert(self, text: str) -> None:
        self._typed.append(text)
        if len(self.keys) < ECHO_KEYS:
            self.keys += text[:ECHO_KEYS].replace("\t", "")[: ECHO_KEYS - len(self.keys)]
        if not self._tail and len(self._line) + len(text) <= LINE_EDIT_MAX:
            self._line[self._cursor : self._cursor] = text
            self._cursor += len(text)
        else:
            self._cursor = len(self._line)
            self._tail.extend(text[start : start + _PIECE_MAX] for start in range(0, len(text), _PIECE_MAX))
            self._tail_length += len(text)

    def _edit(self, key: str) -> None:
        if key == _QUOTE:
            self._quoted = True
        elif key in (_BACKSPACE, _RUBOUT):
            self._delete_before(1)
        elif key in _MOTIONS:
            if not self._tail:
                self._move(key)
        elif self._tail:
            return  # a long line: only Backspace edits it, at its end
        elif key == _DELETE:
            self._delete_after(1)
        elif key == _KILL:
            self._delete_after(len(self._line) - self._cursor)
        elif key == _DISCARD:
            self._delete_before(self._cursor)
        elif key == _WORD:
            start = self._cursor
            while start and self._line[start - 1].isspace():
                start -= 1
            while start and not self._line[start - 1].isspace():
                start -= 1
            self._delete_before(self._cursor - start)

    def _move(self, key: str) -> None:
        if key == _BEGINNING:
            self._cursor = 0
        elif key == _END:
            self._cursor = len(self._line)
        elif key == _BACK:
            self._cursor = max(self._cursor - 1, 0)
        else:
            self._cursor = min(self._cursor + 1, len(self._line))

    def _delete_before(self, count: int) -> None:
        if count <= 0:
            return
        if self._tail:
            last = self._tail[-1]
            self._tail_length -= 1
            if len(last) > 1:
                self._tail[-1] = last[:-1]
            else:
                self._tail.pop()
            return
        count = min(count, self._cursor)
        if count:
            del self._line[self._cursor - count : self._cursor]
            self._cursor -= count

    def _delete_after(self, count: int) -> None:
        count = min(count, len(self._line) - self._cursor)
        if count > 0:
            del self._line[self._cursor : self._cursor + count]
