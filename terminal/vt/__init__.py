"""Which characters of a terminal session are text, for its transcript (terminal.transcript).

What was printed is read in ``screen`` (``ScreenText``: as xterm.js and asciinema-player's avt
show it) and what was typed in ``keys`` (``TypedText``: as a line editor reads keys, each key
sent as a sequence a ``KEY`` token for terminal.line_editor).

Both are fed a piece at a time (a recording's events cut sequences anywhere) and hold only their
state. No Django, so a migration can use them too.
"""

from terminal.vt.keys import KEY, NO_EDIT, TypedText
from terminal.vt.screen import ScreenText

__all__ = ["KEY", "NO_EDIT", "ScreenText", "TypedText"]
