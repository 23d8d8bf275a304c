"""What of the client's environment (ssh SendEnv / SetEnv, and the pty request's terminal type) goes on
to the instance's shell.

The instance's sshd accepts LANG and LC_* (OpenSSH's default AcceptEnv): a value there reaches the
shell, where a command can read or even run it (``eval "$LC_X"``), and it is not in the exec's
command line. So only the locale variables pass, and only with a value that looks like a locale name
(``en_US.UTF-8``, ``C``, ``de_DE@euro``); the ones passed are listed in ``terminal.started``. A LANG or
LC_* the proxy will not pass is refused and written down (``proxy.refused``: the first 32, and how many
more): a locale category (LANG, LC_ALL, LC_TIME...) with its value, which should have been a locale
name; any other LC_* name with only its value's length (no digest: a short secret, a PIN, would be
found again from one by trying every value), since ssh sends
every LC_* of the engineer's shell unasked (Debian's ``SendEnv LANG LC_*``) and people keep tokens in
such variables: the append-only Logbook is no place for them. Other names are dropped as the
instance's sshd would drop them.

The terminal type of a pty request becomes TERM there, a value the shell can run just the same
(``eval "${TERM#*;}"``): only a name as terminfo names terminals passes (``xterm-256color``,
``screen.xterm-256color``, ``vt100``), and the one used is on record (``terminal.started``, the
recording's header). An empty one passes too: sshd then sets no TERM. Another refuses the channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from core.text import TRUNCATED, visible_excerpt
from terminal.proxy.observers.transfer import safe_path

LOCALE_NAMES = frozenset(
    {
        "LANG",
        "LC_ALL",
        "LC_ADDRESS",
        "LC_COLLATE",
        "LC_CTYPE",
        "LC_IDENTIFICATION",
        "LC_MEASUREMENT",
        "LC_MESSAGES",
        "LC_MONETARY",
        "LC_NAME",
        "LC_NUMERIC",
        "LC_PAPER",
        "LC_TELEPHONE",
        "LC_TIME",
        # iTerm2 sends these through the usual `SendEnv LANG LC_*`; the value rule applies to them too.
        "LC_TERMINAL",
        "LC_TERMINAL_VERSION",
    }
)
LOCALE_VALUE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
# What terminfo's names are made of (letters, digits, ".", "-", "+" and "_"), and long enough for any.
TERMINAL_TYPE = re.compile(r"[A-Za-z0-9._+-]{1,64}")
TERMINAL_TYPE_RULE = 'letters, digits and "." "_" "+" "-" only, at most 64'
# A refused value is written down up to this many characters.
MAX_REFUSED_CHARS = 256
# Refused variables written down, the first the client sent; the rest only counted. A client may send
# as many as it likes: without this, one entry of hundreds of kilobytes.
MAX_REFUSED_SHOWN = 32


@dataclass
class Environment:
    passed: dict[str, str] = field(default_factory=dict)
    # Name -> value (storable text, cut; a name not a locale category: its length and digest only), for the
    # Logbook: the first MAX_REFUSED_SHOWN.
    refused: dict[str, str] = field(default_factory=dict)
    # How many more were refused.
    refused_not_shown: int = 0


def locale_environment(environment: Any) -> Environment:
    """Split what the client asked to set into what is passed on and what is refused."""
    result = Environment()
    for raw_name, raw_value in dict(environment).items():
        name, value = _text(raw_name), _text(raw_value)
        if name in LOCALE_NAMES and value is not None and LOCALE_VALUE.fullmatch(value):
            result.passed[name] = value
        elif name == "LANG" or (name or "").startswith("LC_") or _storable(raw_name).startswith("LC_"):
            if len(result.refused) >= MAX_REFUSED_SHOWN:
                result.refused_not_shown += 1
                continue
            if name in LOCALE_NAMES:
                shown = _storable(raw_value)
                if len(shown) > MAX_REFUSED_CHARS:
                    shown = shown[:MAX_REFUSED_CHARS] + TRUNCATED
            else:
                shown = _withheld(raw_value)
            result.refused[_storable(raw_name)[:MAX_REFUSED_CHARS]] = shown
    return result


def terminal_type_refused(term: str) -> str | None:
    """None if this terminal type may be TERM on the instance; else the value to write down, with what is
    invisible or reorders text escaped and cut (``core.text.visible_excerpt``)."""
    if term == "" or TERMINAL_TYPE.fullmatch(term):
        return None
    return visible_excerpt(term, MAX_REFUSED_CHARS)


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _withheld(value: object) -> str:
    """What the Logbook keeps of a value that may be someone's secret: its length, never the value
    nor a digest of it (a digest of a short secret gives it away to whoever tries every value)."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if not isinstance(raw, bytes):
        raw = b""
    return f"(not written down: {len(raw)} bytes)"


def _storable(value: object) -> str:
    if isinstance(value, str):
        return safe_path(value.encode("utf-8", "surrogateescape"))
    if isinstance(value, bytes):
        return safe_path(value)
    return ""
