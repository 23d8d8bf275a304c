"""Whether a line typed at a prompt for a secret was shown back, for the transcript (terminal.transcript).

A password typed at a prompt that turns echo off (``[sudo] password for rs-alice:``, ``mysql -p``,
``su``, an ssh key's passphrase, ``read -sp 'Password: '``) is in the keys recorded, but the host
never showed it: it must not become searchable text or a command marker. A line is left out when
both hold:

- It was typed at a prompt for a secret: the printed line its first key was typed on (what was printed
  before it, never output after its Enter, which can be its own or an earlier pasted command's) names
  one (password, passphrase, PIN, token, verification code, ..., in the languages sudo and PAM speak
  most) and ends in a colon, as those prompts do. A shell's prompt ends in ``$``, ``#``, ``%`` or
  ``>``, whatever directory it names, so commands typed after ``stty -echo`` (which the screen does
  not show either) stay searchable. A line pasted ahead of the prompt that asks for it (in the input
  event of the Enter before it) is kept; a line typed ahead of it (its first key in a later event, before
  anything was printed after that Enter: a password typed at once after ``sudo ...``) takes as its
  prompt the first printed line asking for a secret after that Enter, until a key is typed on it after
  output came.
- It was not shown back: fewer than half of the text keys typed on it (the first ``ECHO_KEYS``,
  terminal.line_editor; not Tab, which a shell answers with a completion) are found, in order, in the
  printed text (escape sequences removed) after its first key. A shell, or the terminal driver with
  ECHO on, echoes each key as it is typed; an edited line's echo holds its keys in the order typed (a
  backspace's echo moves back and overwrites); a line recalled from the history has no keys to look
  for. A prompt that echoes nothing, or a ``*`` per key, gives none of them back.

At most ``SAME_PROMPT_MAX`` lines in a row are hidden at one prompt (sudo asks three times), and at most
``HIDDEN_IN_A_ROW`` in all, until a line is echoed again: a shell prompt made to look like one
(``PS1='Password: '`` with echo off) keeps the lines typed after those.

When it is decided:

- A line typed with no earlier line undecided: at the first line end printed after its Enter, by what
  was printed since its first key (a password's Enter is answered by a newline, or the next prompt,
  with nothing of it before).
- A line typed ahead while an earlier one was undecided (a paste of several lines): a shell echoes it
  only once it reads it, after the output of the commands before, so it is shown if one printed line
  after it holds its keys; the lines are matched in order, so an earlier line's echo is its own.
- Either way, once output came after its Enter and a later key is typed: the person saw the answer
  and went on, so what was printed by then decides. At the end of the recording what was printed
  decides; with nothing printed at all there is nothing to tell an echo by, and every line is kept (a
  recording of input alone). At most ``PENDING_MAX`` lines wait: past that the oldest is decided by
  what was printed so far.

A long paste is judged by its first ``PASTE_JUDGED`` lines only: the lines of one input event after those,
begun where the last printed line asks for nothing secret, could never be left out (pasted at a shell
prompt, none typed ahead of anything), so they wait as one run, kept without looking for their echo, and
do not end a run of hidden lines (a paste of a million short lines costs what a few do).

No Django.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

# What the transcript has instead of a line the host never showed.
NOT_SHOWN = "[input not shown by the host]"
# Lines waiting for their verdict, at most.
PENDING_MAX = 1000
# Lines of one input event judged, at most: the rest of a longer paste is a run, never judged (``pasting``).
PASTE_JUDGED = 16
# Of a printed line, the end looked at for a prompt.
PROMPT_MAX = 256
# Lines hidden in a row (none echoed between): at one prompt (sudo asks three times), and in all.
SAME_PROMPT_MAX = 3
HIDDEN_IN_A_ROW = 6
# A prompt for something secret, in the words sudo, su, ssh, ssh-add, openssl, gpg, mysql, psql, git,
# PAM and vault use, in the languages sudo and PAM are translated to most.
_SECRET_PROMPT = re.compile(
    r"pass(?:word|wd|phrase|code)|pass phrase|\bpin\b|secret|token|\botp\b|one-time|verification code"
    r"|passwort|kennwort|mot de passe|contrase|senha|пароль|パスワード|密码|密碼|비밀번호|hasło|wachtwoord"
    r"|lösenord|adgangskode|salasana|şifre|parola",
    re.IGNORECASE,
)


def asks_for_a_secret(printed_line: str) -> bool:
    """Whether a printed line is a prompt for a secret: it names one and ends in a colon, as those prompts
    do (a shell's prompt ends in ``$``, ``#``, ``%`` or ``>``, whatever directory it names)."""
    line = printed_line.rstrip()
    return line.endswith((":", "\uff1a")) and _SECRET_PROMPT.search(line) is not None


@dataclass
class _Line:
    keys: str  # the text keys typed on it so far (terminal.line_editor ``keys``)
    strict: bool  # typed with no earlier line undecided
    ended: bool = False
    enter_event: int = 0
    enter_printed: int = 0  # how many output events came before its Enter
    begun_printed: int = 0  # how many output events came before its first key
    matched: int = 0  # how many of its keys were found, in order, in what was printed
    prompt: str = ""  # the printed line its first key was typed on, when that asks for a secret
    ahead: bool = False  # typed ahead of the answer to the line before: its prompt is not printed yet
    count: int = 1  # the lines it stands for: more than one only for a run of pasted lines (below)
    run: bool = False  # pasted lines, never judged: kept, and no echo (see ``typed``)

    @property
    def shown(self) -> bool:
        return not self.keys or self.matched * 2 > len(self.keys)

    def match(self, text: str, start: int, stop: int) -> None:
        """Its keys not yet found, looked for in order in ``text[start:stop]``."""
        while self.matched < len(self.keys):
            found = text.find(self.keys[self.matched], start, stop)
            if found < 0:
                return
            self.matched += 1
            start = found + 1


class EchoJudge:
    """The typed lines of one recording in order (``typed``) and what was printed (``printed``); ``take``
    gives whether each was shown, in the order typed, as soon as it is known."""

    def __init__(self) -> None:
        self._lines: deque[_Line] = deque()
        self._decided: list[bool] = []
        self._event = 0
        self._printed = 0  # output events with text
        self._ahead_checked = 0  # ``_printed`` when the lines typed ahead were last looked at
        self._runs = 0  # runs of pasted lines among the lines waiting
        self._event_lines = 0  # lines ended in the input event ``typed`` was last told of
        self.printed_any = False
        self._tail = ""  # the end of the line being printed (PROMPT_MAX)
        # The lines hidden since the last line echoed: how many at each prompt.
        self._hidden: dict[str, int] = {}

    @property
    def waiting(self) -> bool:
        return bool(self._lines)

    @property
    def newest_at_a_secret_prompt(self) -> bool:
        """Whether the newest line not yet decided was begun at a prompt for a secret, or typed ahead of one
        not printed yet (the recording holds
        its keys back until it is decided: terminal.transcript.withhold)."""
        return bool(self._lines) and (bool(self._lines[-1].prompt) or self._lines[-1].ahead)

    @property
    def secret_prompt_printed(self) -> bool:
        """Whether the line printed last (the prompt of a line begun now) asks for a secret."""
        return asks_for_a_secret(self._tail)

    def may_hide(self, index: int) -> bool:
        """Whether the ``index``-th line not yet decided (0: the oldest) may yet be left out: it was begun
        at a prompt for a secret, or typed ahead of a prompt not printed yet."""
        line = self._waiting(index)
        return line is not None and (bool(line.prompt) or line.ahead)

    def ended_at_a_secret_prompt(self, index: int) -> bool:
        """Whether the ``index``-th line not yet decided (0: the oldest) was ended, begun at a prompt for
        a secret."""
        line = self._waiting(index)
        return line is not None and line.ended and bool(line.prompt)

    def _waiting(self, index: int) -> _Line | None:
        """The ``index``-th line not yet decided (0: the oldest), or the run it is in."""
        if not self._runs:
            return self._lines[index] if index < len(self._lines) else None
        for line in self._lines:
            if index < line.count:
                return line
            index -= line.count
        return None

    @property
    def pasting(self) -> bool:
        """Whether a line ended now would be pasted past the first PASTE_JUDGED lines of its input event,
        begun in the event that ended the line before, where the line printed last asks for nothing secret.
        Such a line is never left out (it was not typed at a prompt for a secret, nor ahead of one), so it
        is not judged at all: the lines of a long paste past its first PASTE_JUDGED are kept as a run, which
        waits in its place and is decided, kept, as soon as the lines before it are (no echo is looked for,
        and it does not end a run of lines hidden). A paste of a few lines is judged line by line."""
        last = self._lines[-1] if self._lines else None
        return (
            self._event_lines >= PASTE_JUDGED
            and last is not None
            and last.ended
            and last.enter_event == self._event
            and not asks_for_a_secret(self._tail)
        )

    def pasted(self, count: int) -> None:
        """``count`` lines ended in the input event ``typed`` was last told of, each ``pasting``."""
        self._event_lines += count
        last = self._lines[-1]
        if last.run:
            last.count += count
            return
        self._runs += 1
        run = _Line(keys="", strict=False, ended=True, enter_event=self._event, enter_printed=self._printed)
        run.count, run.run, run.begun_printed = count, True, self._printed
        self._lines.append(run)

    def typed(self, ended: list[str], current: str | None, *, same_event: bool = False) -> None:
        """One input event: the keys of each line it ended, and of the line still being typed (None: none
        begun on it); a line being typed before it is the first ended, or still the one being typed."""
        if not same_event:
            self._event += 1
            self._event_lines = 0
        if self._printed != self._ahead_checked:  # else no line's answer came since the last look
            self._ahead_checked = self._printed
            for line in self._lines:
                if line.ahead and line.begun_printed < self._printed:
                    line.ahead = False  # typed on after output came: its prompt is what was printed by then
        while self._lines and self._lines[0].ended and self._lines[0].enter_event < self._event:
            if self._lines[0].enter_printed == self._printed:
                break  # nothing printed since its Enter
            self._decide()
        for keys in ended:
            if self.pasting:
                self.pasted(1)
                continue
            line = self._open_line()
            self._event_lines += 1
            line.keys, line.ended, line.enter_event, line.enter_printed = keys, True, self._event, self._printed
            self._settle()  # before the next line begins: a line after an empty one waits for nothing
        if current is not None:
            self._open_line().keys = current
        while len(self._lines) > PENDING_MAX:
            self._decide()
        self._settle()

    def _open_line(self) -> _Line:
        """The line being typed: the last one, unless it was ended, else a new one."""
        if self._lines and not self._lines[-1].ended:
            return self._lines[-1]
        prompt = self._tail.strip() if asks_for_a_secret(self._tail) else ""
        before = self._lines[-1] if self._lines else None
        # Begun in a later input event than the Enter before it, nothing printed since: typed ahead of
        # the answer (a password typed at once after ``sudo ...``), judged by the prompt printed next.
        # Begun in the same event (a paste), it is judged by the prompt it was pasted at.
        ahead = before is not None and before.enter_printed == self._printed and before.enter_event < self._event
        line = _Line(keys="", strict=not self._lines, prompt=prompt, ahead=ahead, begun_printed=self._printed)
        self._lines.append(line)
        return line

    def printed(self, text: str) -> None:
        """The text of one output event (escape sequences removed, ``\\n`` for a line end)."""
        if not text:
            return
        self.printed_any = True
        self._printed += 1
        start, end = 0, len(text)
        if not self._lines:  # no line to look for: only the end of the last printed line is kept
            start = text.rfind("\n") + 1
            self._tail = (self._tail if start == 0 else "") + text[max(start, end - PROMPT_MAX) :]
            self._tail = self._tail[-PROMPT_MAX:]
            return
        while start < end:
            newline = text.find("\n", start)
            stop = end if newline < 0 else newline
            if self._lines:
                self._lines[0].match(text, start, stop)
            printed_line = (self._tail + text[max(start, stop - PROMPT_MAX) : stop])[-PROMPT_MAX:]
            self._prompt_printed(printed_line)
            if newline < 0:
                self._tail = printed_line
                return
            self._tail, start = "", newline + 1
            if not self._lines:
                continue
            head = self._lines[0]
            if head.strict and head.ended:
                self._decide()
            elif not head.strict:
                if head.ended and head.shown:
                    self._decide()
                else:
                    head.matched = 0  # an echo is on one printed line: the next one starts over
            self._settle()

    def _prompt_printed(self, printed_line: str) -> None:
        """A printed line (or the end of one): the prompt of the oldest line typed ahead, if it asks for
        a secret."""
        if not asks_for_a_secret(printed_line):
            return
        for line in self._lines:
            if line.ahead:
                line.prompt, line.ahead = printed_line.strip(), False
                return

    def _settle(self) -> None:
        """Lines with nothing to look for are shown once ended."""
        while self._lines and self._lines[0].ended and not self._lines[0].keys:
            self._decide()

    def _decide(self) -> None:
        line = self._lines.popleft()
        if line.run:
            self._runs -= 1
            self._decided.extend([True] * line.count)
            return
        if line.shown and (line.keys or not line.prompt):
            # Echoed, or a line recalled from the history (no keys to look for) at a prompt that asks
            # for nothing secret: a new run of hidden lines may begin. A sudo asking at each run of a
            # recalled command hides each password so, not only the first three.
            self._hidden.clear()
        hide = bool(line.prompt) and not line.shown and self.printed_any
        again = self._hidden.get(line.prompt, 0)
        if hide and (again >= SAME_PROMPT_MAX or sum(self._hidden.values()) >= HIDDEN_IN_A_ROW):
            hide = False  # a prompt that keeps coming back, not a secret asked again: kept
        elif hide:
            self._hidden[line.prompt] = again + 1
        self._decided.append(not hide)

    def finish(self) -> None:
        """The end of the recording: every line left is decided, the one still being typed too."""
        while self._lines:
            self._decide()

    def take(self) -> list[bool]:
        if not self._decided:
            return self._decided
        decided, self._decided = self._decided, []
        return decided
