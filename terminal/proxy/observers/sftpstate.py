"""What the sftp observer (observers.sftp) keeps: each open file's content each way, and each request
in flight until its answer."""

from __future__ import annotations

from dataclasses import dataclass

from terminal.proxy.observers.sftpchange import PendingChange
from terminal.proxy.observers.transfer import OrderedDigest, PendingBudget

FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC = 0x01, 0x02, 0x04, 0x08, 0x10


class Stream:
    """One direction of one open file."""

    def __init__(self, budget: PendingBudget) -> None:
        self.digest = OrderedDigest(budget)
        self.failed = False  # a WRITE or READ answered with an error, or a DATA larger than asked for
        self.eof_at: int | None = None  # lowest offset a READ was answered with EOF


class OpenFile:
    def __init__(self, serial: int, path: str, pflags: int, budget: PendingBudget) -> None:
        self.serial = serial
        self.path = path
        self.pflags = pflags
        self._budget = budget
        self.upload: Stream | None = None
        self.download: Stream | None = None

    def uploading(self) -> Stream:
        if self.upload is None:
            self.upload = Stream(self._budget)
        return self.upload

    def downloading(self) -> Stream:
        if self.download is None:
            self.download = Stream(self._budget)
        return self.download

    @property
    def creates(self) -> bool:
        """Opened to create or empty the file: an upload even when no byte follows (a 0-byte put)."""
        return bool(self.pflags & FXF_WRITE and self.pflags & (FXF_CREAT | FXF_TRUNC))


@dataclass
class Open:
    path: str
    pflags: int
    number: int  # how many OPEN and OPENDIR came before it


@dataclass
class OpenDir:
    path: str
    number: int


class Untracked:
    """A request whose answer changes nothing reported (stat, readdir, a directory's close...)."""


class Waiting:
    """A request held until its handle is known: no answer can come before it is taken."""


UNTRACKED, WAITING = Untracked(), Waiting()


@dataclass
class Read:
    file: OpenFile
    offset: int
    length: int


@dataclass
class Write:
    file: OpenFile


@dataclass
class Close:
    file: OpenFile


Pending = Open | OpenDir | Read | Write | Close | PendingChange | Untracked | Waiting
