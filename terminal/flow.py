"""Flow control towards a browser that may stop reading: the watch page (terminal.watch) and the
person's own terminal (terminal.session). No Django and no Channels here.

Nothing in ASGI tells a consumer how much the server still holds for its socket, and daphne
(Twisted) queues every frame sent without a limit: a page that stops reading (a stalled network, a
client holding the socket open and reading nothing) would make the web process hold everything a
session prints. So the flow control is the application's. After every ``ACK_EVERY`` bytes sent the
server sends a ``mark`` envelope with a random ``id``; the page echoes it once it has written
everything before it, as ``{"v": 1, "type": "ack", "id": ...}`` (an id it can only know by reading
that far). ``AckWindow`` counts what was sent and not yet acknowledged; past ``MAX_UNACKED`` the
sender holds back (what it holds back is its own choice: the watch page gets nothing and is
resynchronised later, the terminal stops reading the shell's output).

Input, the other way, is bounded the same way round. Nothing tells a consumer that the shell on the
instance stopped reading (the SSH channel's window closes and asyncssh keeps what it could not send),
and daphne queues every frame a page sends, read or not: so the server never stops taking frames, it
tells the page how much of its input it has ``taken`` (``{"v": 1, "type": "taken", "bytes": n}``,
every ``INPUT_TAKEN_EVERY`` bytes or so, once what waits for the instance has drained), and the page
keeps the rest of a paste until then, at most ``INPUT_WINDOW`` bytes (UTF-8) sent and not yet taken. A
client that sends more than ``INPUT_MAX_UNTAKEN`` past the last ``taken`` is closed (terminal.session_input).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

ACK_EVERY = 64 * 1024
MAX_UNACKED = 1024 * 1024
# Roughly what a frame costs the server beyond its payload: a flood of tiny frames counts too.
FRAME_COST = 64
# Marks remembered (the window holds about MAX_UNACKED / ACK_EVERY of them); an older one is forgotten.
MAX_MARKS = 64
MAX_MARK_CHARS = 64
# An ack frame longer than this is not one.
MAX_ACK_CHARS = 200

# Input a page may send before the server says it was taken (the page keeps the rest of a paste).
INPUT_WINDOW = 1024 * 1024
# The server says how much it has taken about this often (in bytes of input), once it has drained.
INPUT_TAKEN_EVERY = 64 * 1024
# Past this much input sent and not yet taken the client is not keeping to the window: it is closed.
INPUT_MAX_UNTAKEN = 2 * INPUT_WINDOW


def mark_id(value: Any) -> str | None:
    """``value`` if it may be a mark's id (a short ASCII string: what compare_digest takes), else None."""
    ok = isinstance(value, str) and 0 < len(value) <= MAX_MARK_CHARS and value.isascii()
    return value if ok else None


def ack_of(message: Any, version: int) -> str | None:
    """The mark a decoded ``ack`` envelope names: exactly ``v``, ``type`` and ``id``; else None."""
    if not isinstance(message, dict) or set(message) != {"v", "type", "id"}:
        return None
    if type(message["v"]) is not int or message["v"] != version or message["type"] != "ack":
        return None
    return mark_id(message["id"])


def parse_ack(text: str | None, version: int) -> str | None:
    """The mark an ``ack`` text frame names, or None for anything else."""
    if text is None or len(text) > MAX_ACK_CHARS:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return ack_of(message, version)


class AckWindow:
    """Bytes sent (each frame with FRAME_COST), up to the last acknowledged mark, at the last mark;
    the marks sent and not yet acknowledged, oldest first."""

    __slots__ = ("acked", "marked", "marks", "sent")

    def __init__(self) -> None:
        self.sent = self.acked = self.marked = 0
        self.marks: list[tuple[str, int]] = []

    @property
    def unacked(self) -> int:
        return self.sent - self.acked

    def fits(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes may be sent now."""
        return self.unacked + size + FRAME_COST <= MAX_UNACKED

    def count(self, size: int) -> str | None:
        """A frame of ``size`` bytes was sent; the id of the mark to send now, if one is due."""
        self.sent += size + FRAME_COST
        if self.sent - self.marked < ACK_EVERY:
            return None
        self.marked = self.sent
        mark = secrets.token_urlsafe(12)
        self.marks.append((mark, self.sent))
        del self.marks[:-MAX_MARKS]
        return mark

    def acknowledge(self, mark: str) -> bool:
        """The page acknowledged ``mark``: everything up to it (and the marks before it) is read.
        False for an id this window did not send (or forgot): nothing changes."""
        for index, (sent_mark, sent) in enumerate(self.marks):
            if secrets.compare_digest(sent_mark, mark):
                del self.marks[: index + 1]
                self.acked = max(self.acked, sent)
                return True
        return False
