"""Keys typed at a prompt for a secret that the host did not show back, kept out of the recording itself.

The transcript leaves such a line out (terminal.transcript.echo); the asciicast would still hold every key
of the password as ``i`` events, under Object Lock. ``SecretInputGate`` stands between a recording's
writer (terminal.recording ``AsciicastWriter``) and its sink and applies the same judge, an event at a
time, as the events are written:

- A line begun at a prompt for a secret (``EchoJudge.newest_at_a_secret_prompt``: the printed line its
  first key was typed on, as the transcript reads it; or, typed ahead of the answer to the line before,
  the first prompt for a secret printed after that line's Enter) is held back, and with it every event
  after it (of either direction, so the recording stays in time order), until the judge decides it.
- Shown (echoed: it was no secret; or past the judge's limits, ``SAME_PROMPT_MAX`` lines at one prompt
  and ``HIDDEN_IN_A_ROW`` in all until a line is echoed, so a fake prompt hides no session): its events
  are written as they were, with their own times.
- Not shown: its keys are not written. In their place one ``[seconds, "w", "<bytes>"]`` event at the time
  of its first key says how many bytes were withheld there, then its Enter as an ``i`` event at the
  time it was typed. Players skip the code; the transcript reads it as a line not shown (NOT_SHOWN).

What was printed and typed is read as the transcript reads it, with shortcuts so that a terminal
printing (or sent) megabytes costs little more: while no typed line waits for its verdict, output is read
only when a key is typed, and only its last few KiB (the prompt is the last printed line); of a line's
keys, only its first ``ECHO_KEYS`` (all the judge looks for) and the end of each piece (its Enter); the
lines of an input event after its first, where none may be held back, all at once, and those of a long
paste the judge does not judge (``EchoJudge.pasting``) only counted. What one input event typed is
written as one event (or, around keys withheld, as few as that allows), as the transcript reads it.

Output held past ``HELD_OUTPUT_MAX`` (a prompt for a secret left typing at while the host prints on) is
written at once and from then on as it comes, the held keys after it, with their own (earlier) times,
once decided. More than ``HELD_INPUT_MAX`` typed while a line waits is no
password: what is held is written as it was, and those lines are held no longer, but for a line already
ended at a prompt for a secret that waits for its verdict (a paste after a password's Enter), kept until
decided like the keys of a spill. No Django.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from terminal.line_editor import ECHO_KEYS, LineEditor, TypedLine
from terminal.transcript.echo import EchoJudge
from terminal.transcript.text import Cleaner
from terminal.vt import TypedText

# The code of the event that stands for a line's keys withheld; its data is how many bytes (UTF-8).
WITHHELD = "w"
# Output held behind a line not yet decided, at most (bytes of text): past it, written as it comes.
HELD_OUTPUT_MAX = 1024 * 1024
# Keys held behind a line not yet decided, at most: past it (a paste, no password) they are written.
HELD_INPUT_MAX = 64 * 1024
# While no typed line waits for its verdict, output is read only when a key is typed, and of more than
# twice this only the end (a prompt is the last line printed; terminal.transcript.echo keeps PROMPT_MAX
# characters of it).
QUIET_READ_MAX = 4096
# Keys are read this many characters at a time until a line has its ECHO_KEYS; then only the end of each
# piece that ends a line.
KEYS_READ = 96

_LINE_END = re.compile(r"[\r\n]")
# A key that is not text, but for Tab and the line ends (an escape sequence, a control).
_NOT_PLAIN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

Emit = Callable[[float, str, str], None]


@dataclass
class _Held:
    seconds: float
    code: str
    text: str
    line: int = -1  # of a piece of input: the typed line it is on
    ends: bool = False  # of a piece of input: it ended that line (its Enter is its last character)
    event: int = 0  # of a piece of input: the input event it came in (pieces of one are written as one)


def _size(text: str) -> int:
    """Its bytes as typed (a raw recording's text keeps bytes that are not UTF-8 as surrogates)."""
    return len(text.encode("utf-8", "surrogateescape"))


class SecretInputGate:
    """One recording's events (``event``: ``o``, ``i``, ``r``, in the order they happen) on their way to
    ``emit``, lines typed at a prompt for a secret that the host did not show held back and withheld
    (see above); ``withheld_bytes`` and ``withheld_lines`` count what was withheld. ``close`` at the end
    decides and writes everything still held."""

    def __init__(self) -> None:
        self._emit: Emit | None = None
        self._printed = Cleaner(typed=False)
        # Output not yet read (nothing waited for an echo), its end only when long.
        self._unread: list[str] = []
        self._unread_size = 0
        self._unread_cut = False
        self._keys = TypedText()
        self._editor = LineEditor()
        self._judge = EchoJudge()
        self._line = 0  # the typed line being typed (how many were ended before it)
        self._decided = 0  # how many typed lines the judge decided
        self._hidden: set[int] = set()  # the lines decided not shown, of those with keys still held
        self._held: deque[_Held] = deque()
        self._held_output = 0
        self._held_input = 0
        self._let_through = -1  # lines up to this one are written as they come (HELD_INPUT_MAX)
        self._spilled = False  # held output went past HELD_OUTPUT_MAX: output is written as it comes
        self._passing = False  # past HELD_INPUT_MAX with a line kept (_let_go): keys written as they come
        self._withholding = -1  # the line whose keys are being withheld
        self._same_event = False  # the judge was told of keys of this input event already
        self._events = 0  # input events so far
        self._unwritten: _Held | None = None  # input written, joined by the rest of its event's
        self.withheld_bytes = 0
        self.withheld_lines = 0

    def attach(self, emit: Emit) -> None:
        """Where events go: ``emit(seconds, code, text)``, in order."""
        self._emit = emit

    def event(self, seconds: float, code: str, text: str) -> None:
        if code == "i":
            self._same_event = False
            self._events += 1
            self._typed_event(seconds, text)
        else:
            if code == "o":
                self._read_printed(text)
            self._after(_Held(seconds, code, text))
        self._release()
        self._flush()

    def _typed_event(self, seconds: float, text: str) -> None:
        """One input event, a piece (at most one line's keys, with its Enter) at a time; but after the
        first, whole lines at once where the rule would treat each alike (a paste: the lines after the first
        of one event all begin at the same printed line and none is typed ahead of anything; when that line
        asks for nothing secret, none of them may be hidden, and one call judges them all)."""
        start, end = 0, len(text)
        last = max(text.rfind("\r"), text.rfind("\n"))  # the event's last line end
        odd = -1  # where the next key that is not text or a line end is, at or after ``start`` (end: none)
        while start < end:
            if start and start <= last:
                if odd < start:
                    found = _NOT_PLAIN.search(text, start)
                    odd = end if found is None else found.start()
                if self._whole_lines(seconds, text[start : last + 1], plain=odd > last):
                    start = last + 1
                    continue
            found = _LINE_END.search(text, start)
            stop = end if found is None else found.end()
            self._typed(seconds, text[start:stop])
            start = stop

    def _whole_lines(self, seconds: float, text: str, *, plain: bool) -> bool:
        """Whole lines of an input event, after its first line end: judged and written (or held behind what
        is held) at once, as ``_typed`` would each of them; False, nothing done, where it might not (a line
        begun at a prompt for a secret, a line between those written as they come and those held, or
        held keys that would grow past HELD_INPUT_MAX: ``_typed`` decides those one at a time)."""
        if self._editor.begun or self._judge.secret_prompt_printed:
            return False
        beyond = self._line > self._let_through
        hold = bool(self._held) and not self._passing and beyond
        if self._held and not self._passing and not beyond:
            return False
        if hold and self._held_input + len(text) > HELD_INPUT_MAX:
            return False
        plain = plain and self._keys.idle  # text and line ends only, read from the first
        if plain and not self._judge.pasting:
            return False  # the first lines of a paste are judged one at a time
        if plain:
            # Text and line ends only: every CR and LF ends a line, each pasted (terminal.transcript.echo).
            count = text.count("\r") + text.count("\n")
            self._line += count
            self._judge.pasted(count)
            held = _Held(seconds, "i", text, line=self._line - 1, ends=True, event=self._events)
        else:
            ended = self._editor.feed(self._keys.feed(text))
            self._line += len(ended)
            keys = [line.keys if isinstance(line, TypedLine) else "" for line in ended]
            self._judge.typed(keys, self._editor.keys if self._editor.begun else None, same_event=True)
            # Its Enter may have been typed after Ctrl-V, which ends no line: then its text goes on.
            on = self._line if self._editor.begun else self._line - 1
            held = _Held(seconds, "i", text, line=on, ends=not self._editor.begun, event=self._events)
        if hold:
            self._held.append(held)
            self._held_input += len(text)
        else:
            self._write(held)
        return True

    def _read_printed(self, text: str) -> None:
        if not self._judge.waiting:
            # Nothing waits for an echo: only the last printed line counts, read once a key is typed.
            self._unread.append(text)
            self._unread_size += len(text)
            if self._unread_size > 2 * QUIET_READ_MAX:
                kept = "".join(self._unread)[-QUIET_READ_MAX:]
                self._unread, self._unread_size, self._unread_cut = [kept], len(kept), True
            return
        self._judge.printed(self._printed.read(text))

    def _catch_up(self) -> None:
        """What was printed and not yet read, read (a piece of its end afresh, when it was long)."""
        if not self._unread:
            return
        if self._unread_cut:
            self._printed = Cleaner(typed=False)
        text = "".join(self._unread)
        self._unread, self._unread_size, self._unread_cut = [], 0, False
        self._judge.printed(self._printed.read(text))

    def _typed(self, seconds: float, piece: str) -> None:
        self._catch_up()
        line = self._line
        self._judge_keys(piece)
        held = _Held(seconds, "i", piece, line=line, ends=self._line > line, event=self._events)
        if not self._passing and line > self._let_through and (self._held or self._judge.newest_at_a_secret_prompt):
            self._held.append(held)
            self._held_input += len(piece)
            if self._held_input > HELD_INPUT_MAX:
                self._let_go()
        else:
            self._write(held)

    def _let_go(self) -> None:
        """Past HELD_INPUT_MAX typed and not decided (no password is that long): what is held is written
        as it was, and the lines typed so far are no longer held; but for the oldest line held when it
        was ended at a prompt for a secret and waits for its verdict (a password's Enter, then a paste
        before the host answered it). Its keys stay held until it is decided, written then with their
        own (earlier) times, and output and keys are written as they come meanwhile."""
        self._release()  # lines the judge decided meanwhile first, in order
        kept: deque[_Held] = deque()
        first = next((held.line for held in self._held if held.code == "i"), -1)
        keep = first >= 0 and self._judge.ended_at_a_secret_prompt(first - self._decided)
        for held in self._held:
            if keep and held.code == "i" and held.line == first:
                kept.append(held)
            else:
                self._write(held)
        self._held = kept
        self._held_input = sum(len(held.text) for held in kept)
        self._held_output = 0
        self._let_through, self._spilled, self._passing = self._line, bool(kept), bool(kept)

    def _judge_keys(self, piece: str) -> None:
        """The keys of ``piece`` to the judge. Past a line's first ECHO_KEYS text keys (all the judge looks
        for) only the end of a piece is read, for the Enter that ends it: a long line costs little."""
        start = 0
        while start < len(piece) and len(self._editor.keys) < ECHO_KEYS:
            self._edit(piece[start : start + KEYS_READ])
            start += KEYS_READ
        if start < len(piece):
            if piece[-1] in "\r\n":
                self._edit(piece[max(start, len(piece) - KEYS_READ) :])
            else:
                self._judge.typed([], self._editor.keys if self._editor.begun else None, same_event=True)

    def _edit(self, keys: str) -> None:
        ended = self._editor.feed(self._keys.feed(keys))
        self._line += len(ended)
        self._judge.typed(
            [line.keys if isinstance(line, TypedLine) else "" for line in ended],
            self._editor.keys if self._editor.begun else None,
            same_event=self._same_event,
        )
        self._same_event = True

    def _after(self, held: _Held) -> None:
        """Output (or a size change): after what is held, or at once."""
        if not self._held or self._spilled:
            self._write(held)
            return
        self._held.append(held)
        self._held_output += len(held.text)
        if self._held_output > HELD_OUTPUT_MAX:
            self._spill()

    def _spill(self) -> None:
        """Write the output held, and from now on output as it comes, until nothing is held."""
        self._spilled = True
        kept: deque[_Held] = deque()
        for held in self._held:
            if held.code == "i":
                kept.append(held)
            else:
                self._write(held)
        self._held, self._held_output = kept, 0

    def _release(self) -> None:
        for shown in self._judge.take():
            if not shown:
                self._hidden.add(self._decided)
            self._decided += 1
        while self._held:
            held = self._held[0]
            if held.code == "i" and held.line >= self._decided and self._judge.may_hide(held.line - self._decided):
                return  # its line is not decided yet
            self._held.popleft()
            if held.code != "i":
                self._held_output -= len(held.text)
                self._write(held)
                continue
            self._held_input -= len(held.text)
            if held.line in self._hidden:
                self._withhold(held)
            else:
                self._write(held)
        self._spilled = self._passing = False
        self._hidden.clear()

    def _withhold(self, held: _Held) -> None:
        """A piece of a line not shown: its keys withheld, its Enter written."""
        enter = held.text[-1] if held.ends and held.text[-1:] in ("\r", "\n") else ""
        if self._withholding != held.line:
            self._withholding = held.line
            withheld = sum(
                _size(piece.text[: -1 if piece.ends and piece.text[-1:] in ("\r", "\n") else None])
                for piece in self._held
                if piece.code == "i" and piece.line == held.line
            ) + _size(held.text[: -1 if enter else None])
            self.withheld_bytes += withheld
            self.withheld_lines += 1
            self._write(_Held(held.seconds, WITHHELD, str(withheld)))
        if enter:
            self._write(_Held(held.seconds, "i", enter, event=held.event))

    def _write(self, held: _Held) -> None:
        """Written in order; pieces of one input event written one after another, as one event."""
        unwritten = self._unwritten
        if unwritten is not None and held.code == "i" and held.event == unwritten.event:
            unwritten.text += held.text
            return
        self._flush()
        if held.code == "i":
            self._unwritten = _Held(held.seconds, "i", held.text, event=held.event)
            return
        assert self._emit is not None, "attach() first"
        self._emit(held.seconds, held.code, held.text)

    def _flush(self) -> None:
        if self._unwritten is not None:
            assert self._emit is not None, "attach() first"
            unwritten, self._unwritten = self._unwritten, None
            self._emit(unwritten.seconds, "i", unwritten.text)

    def close(self) -> None:
        """The end of the recording: every line left is decided (as the transcript decides them), and
        everything held written."""
        self._catch_up()
        ended = self._editor.feed(self._keys.end())
        self._line += len(ended)
        self._judge.typed([line.keys if isinstance(line, TypedLine) else "" for line in ended], None)
        self._judge.finish()
        self._release()
        # Pieces of no line the judge saw (keys that typed nothing: an escape sequence cut off at the end).
        while self._held:
            self._write(self._held.popleft())
        self._flush()
