"""The browser terminal's wire format: a small versioned envelope, checked before anything acts on it.

Browser -> server:

- text frames are JSON envelopes ``{"v": 1, "type": ..., ...}``:
  ``{"v": 1, "type": "input", "data": str}`` (keystrokes or a paste),
  ``{"v": 1, "type": "resize", "cols": int, "rows": int}``, ``{"v": 1, "type": "ping"}``,
  ``{"v": 1, "type": "ack", "id": str}`` (the page has written everything before that ``mark``);
- a binary frame is input as raw bytes (what a client that already holds bytes sends).

Server -> browser: binary frames are the shell's output bytes, exactly as recorded; text frames
are envelopes of type ``status`` (``message``), ``ready``, ``pong``, ``ends`` (``at``: the
request's end time, ISO 8601, sent again after an extension), ``notice`` (``level``, ``message``,
``at``: the warnings before that end, shown by the page and never given to the shell;
terminal.expiry), ``mark`` (``id``: flow control, terminal.flow; the page answers with an ``ack``
once it has written everything before it), ``taken`` (``bytes``: how much of the page's input the
server has taken in all; the page sends at most terminal.flow's ``INPUT_WINDOW`` more) and ``closed``
(``reason``), the last one just before the server closes the socket. A page that stays behind too
long is closed with 4408; a client that sends input far past what was taken (the shell on the
instance is not reading it) with 4507.

Anything else is refused and the socket closed with a code that says why: a frame that is not an
envelope, has unknown or missing fields, or an unknown type (4400), another version (4426), or
a frame past the size limit (4413). A terminal refused because its person already has as many
sessions open as they may closes with 4429, after its ``closed`` reason; one whose page's one-time ticket
is refused (terminal.middleware) with 4403, after its ``closed`` reason. No Django and no Channels here.

``Browser`` is the end the server's frames go to: the WebSocket consumer, or a test's stand-in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from core.text import visible
from terminal.flow import mark_id

VERSION = 1
# A paste is sent in pieces (static/terminal/terminal.js): no legitimate frame comes near this.
MAX_FRAME_BYTES = 64 * 1024
# What a refusal quotes of a client's unexpected field names.
MAX_NAMES_SHOWN = 5
MAX_NAME_SHOWN = 40
# The largest terminal: what a recording's player (asciinema-player) still shows. Every path that
# records a size (this one, the CLI proxy's pty-req and window-change) keeps within it.
MAX_COLS, MAX_ROWS = 1000, 500

CLOSE_ENDED = 4000
CLOSE_BAD_FRAME = 4400
CLOSE_FRAME_TOO_LARGE = 4413
CLOSE_UNSUPPORTED_VERSION = 4426
# The person has as many sessions open as they may (terminal.slots): refused before it started.
CLOSE_TOO_MANY_SESSIONS = 4429
# The page stopped reading the output (acknowledged nothing for long: terminal.flow).
CLOSE_NOT_READING = 4408
# The client went on sending input the instance was not reading, past terminal.flow's INPUT_MAX_UNTAKEN.
CLOSE_INPUT_NOT_TAKEN = 4507


class FrameRefused(Exception):
    """A frame the terminal will not act on; ``code`` is the WebSocket close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Input:
    data: bytes


@dataclass(frozen=True)
class Resize:
    cols: int
    rows: int


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Ack:
    id: str


Frame = Input | Resize | Ping | Ack


def _fields(message: dict[str, Any], *allowed: str) -> None:
    unexpected = set(message) - {"v", "type", *allowed}
    if unexpected:
        # The names are the client's: each cut short and made visible, a few of them at most.
        names = sorted(visible(name[:MAX_NAME_SHOWN]) for name in unexpected)
        listed = ", ".join(names[:MAX_NAMES_SHOWN]) + (
            f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
        )
        raise FrameRefused(CLOSE_BAD_FRAME, f"Unexpected fields in a terminal frame: {listed}.")


def bounded_size(cols: int, rows: int) -> tuple[int, int]:
    """``cols`` x ``rows`` within 1x1 and MAX_COLS x MAX_ROWS."""
    return max(1, min(MAX_COLS, cols)), max(1, min(MAX_ROWS, rows))


def _size(message: dict[str, Any], name: str, limit: int) -> int:
    value = message.get(name)
    # bool is an int in Python; JSON true is not a size.
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameRefused(CLOSE_BAD_FRAME, f"A resize frame needs a whole number for {name}.")
    return max(1, min(limit, value))


def _input(message: dict[str, Any]) -> Frame:
    _fields(message, "data")
    data = message.get("data")
    if not isinstance(data, str):
        raise FrameRefused(CLOSE_BAD_FRAME, "An input frame needs its data as a string.")
    # surrogatepass: a lone surrogate from a broken paste is kept as bytes, never an exception.
    return Input(data=data.encode("utf-8", errors="surrogatepass"))


def _resize(message: dict[str, Any]) -> Frame:
    _fields(message, "cols", "rows")
    return Resize(cols=_size(message, "cols", MAX_COLS), rows=_size(message, "rows", MAX_ROWS))


def _ping(message: dict[str, Any]) -> Frame:
    _fields(message)
    return Ping()


def _ack(message: dict[str, Any]) -> Frame:
    _fields(message, "id")
    mark = mark_id(message.get("id"))
    if mark is None:
        raise FrameRefused(CLOSE_BAD_FRAME, "An ack frame needs the id of a mark.")
    return Ack(id=mark)


# One parser per type: a type not listed here is refused.
PARSERS: dict[str, Callable[[dict[str, Any]], Frame]] = {
    "input": _input,
    "resize": _resize,
    "ping": _ping,
    "ack": _ack,
}


def decode_text(text: str) -> Frame:
    """A text frame from the browser as one of the frame types; raises FrameRefused otherwise."""
    if len(text) > MAX_FRAME_BYTES or len(text.encode("utf-8", errors="surrogatepass")) > MAX_FRAME_BYTES:
        raise FrameRefused(CLOSE_FRAME_TOO_LARGE, f"A terminal frame may be at most {MAX_FRAME_BYTES} bytes.")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # nested past the recursion limit: 64 KiB of "[" is plenty
        raise FrameRefused(CLOSE_BAD_FRAME, "A terminal frame must be a JSON envelope.") from None
    if not isinstance(message, dict):
        raise FrameRefused(CLOSE_BAD_FRAME, "A terminal frame must be a JSON object.")
    version = message.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version != VERSION:
        raise FrameRefused(
            CLOSE_UNSUPPORTED_VERSION, f"This terminal speaks version {VERSION} of its protocol; reload the page."
        )
    kind = message.get("type")
    parser = PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise FrameRefused(CLOSE_BAD_FRAME, "Unknown terminal frame type.")
    return parser(message)


def decode_binary(data: bytes) -> Frame:
    """A binary frame from the browser: input bytes, within the size limit."""
    if len(data) > MAX_FRAME_BYTES:
        raise FrameRefused(CLOSE_FRAME_TOO_LARGE, f"A terminal frame may be at most {MAX_FRAME_BYTES} bytes.")
    return Input(data=bytes(data))


def encode(kind: str, **fields: str | int) -> str:
    """A server -> browser envelope."""
    return json.dumps({"v": VERSION, "type": kind, **fields})


class Browser(Protocol):
    """The other end of a terminal: where its envelopes, output and final close go."""

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int) -> None: ...
