"""What an observer reports, and the pieces both observers share: safe paths and in-order hashing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from core.text import TRUNCATED

Direction = Literal["upload", "download"]
Protocol = Literal["sftp", "scp"]

# Longer names are cut (PATH_MAX on Linux is 4096 bytes): a Logbook entry, not a copy of a hostile blob.
MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class Transfer:
    path: str  # as the client named it, see safe_path()
    direction: Direction
    size: int  # bytes of file content that crossed the channel
    sha256: str  # hex digest of the content in file-offset order (of the contiguous part, when incomplete)
    complete: bool  # False when the channel closed mid-transfer, offsets had gaps, or a side reported an error
    protocol: Protocol


@dataclass(frozen=True)
class Change:
    """A file or directory changed other than by its content (sftp): removed, renamed, linked, made, or
    its attributes set. Paths as safe_path() makes them; ``status`` is the server's answer."""

    operation: str  # remove, rmdir, mkdir, rename, symlink, hardlink, setstat, copy-data, extended
    path: str  # what was changed (the new name of a rename, the link made by symlink or hardlink)
    status: str  # "ok", "failed" or "unanswered" (the channel ended first)
    target: str = ""  # the old name of a rename, what a link points at, a copy's source
    attributes: dict[str, int | str] = field(default_factory=dict)  # setstat/mkdir: mode (octal), uid...
    message: str = ""  # the server's reason when it failed


def safe_path(raw: bytes | bytearray | memoryview) -> str:
    """A file name from the wire as text that any sink can store: UTF-8 is kept as it is (spaces, newlines,
    escape sequences and ``$(...)`` included: they are data, the sinks escape them), a byte that is not UTF-8
    and NUL become the four characters ``\\xNN``, and a name beyond MAX_PATH_CHARS is cut and marked."""
    text = bytes(raw).decode("utf-8", errors="surrogateescape")
    if not text.isprintable():  # cheap test first: most names need no work
        text = "".join(_safe_char(char) for char in text)
    if len(text) > MAX_PATH_CHARS:
        text = text[:MAX_PATH_CHARS] + TRUNCATED
    return text


def _safe_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the undecodable byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if code == 0:
        return "\\x00"
    return char


def join_path(directory: str, name: str) -> str:
    """``directory/name`` without doubling a slash; an empty directory leaves the name as it is."""
    if not directory:
        return name
    if directory.endswith("/"):
        return directory + name
    return f"{directory}/{name}"


class PendingBudget:
    """Bytes held for out-of-order pieces, shared by every stream of one observer so that many handles
    together cannot hold more than the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, amount: int) -> bool:
        if self.used + amount > self.limit:
            return False
        self.used += amount
        return True

    def give_back(self, amount: int) -> None:
        self.used -= amount


class OrderedDigest:
    """SHA-256 of a file's content from pieces that arrive in any order.

    The hash runs from offset 0. Pieces at the next offset are hashed at once; later ones wait in memory
    (counted against the budget) until the gap before them fills; a transfer that starts elsewhere (a
    resumed put or get) therefore waits until the budget runs out, and is incomplete. A piece that would
    overflow the budget, or that overlaps content already seen, stops hashing for good: the digest then
    covers the contiguous prefix, and the stream is not ``contiguous``. ``size`` counts every byte
    offered either way.
    """

    def __init__(self, budget: PendingBudget) -> None:
        self._budget = budget
        self._sha = hashlib.sha256()
        self._pieces: dict[int, bytes] = {}
        self._held = 0
        self.position = 0  # end of the hashed prefix
        self.size = 0
        self.hashing = True

    def add(self, offset: int, data: bytes | memoryview) -> None:
        self.size += len(data)
        if not self.hashing or not data:
            return
        if offset == self.position:
            self._sha.update(data)
            self.position += len(data)
            self._drain()
        elif offset > self.position and offset not in self._pieces and self._budget.take(len(data)):
            self._pieces[offset] = bytes(data)
            self._held += len(data)
        else:  # overlaps what was hashed, a duplicate, or over the budget
            self.stop()

    def _drain(self) -> None:
        while self._pieces:
            piece = self._pieces.pop(self.position, None)
            if piece is None:
                return
            self._held -= len(piece)
            self._budget.give_back(len(piece))
            self._sha.update(piece)
            self.position += len(piece)

    def stop(self) -> None:
        """Stop hashing and free what was held; ``size`` keeps counting."""
        self.hashing = False
        self._pieces.clear()
        self._budget.give_back(self._held)
        self._held = 0

    @property
    def contiguous(self) -> bool:
        """Everything offered was hashed in order, from offset 0, without gaps."""
        return self.hashing and not self._pieces

    def finish(self) -> tuple[str, bool]:
        """The hex digest and whether the stream was contiguous; held pieces are freed."""
        contiguous = self.contiguous
        if self._pieces:
            self.stop()
        return self._sha.hexdigest(), contiguous
