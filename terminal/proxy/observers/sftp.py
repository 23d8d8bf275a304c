"""Watching the sftp subsystem (what `sftp` and modern `scp` speak) for files going up and down.

SFTP version 3 (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it): every packet is a uint32 length,
a type byte, and (after INIT/VERSION) a uint32 request id that the reply repeats. A file transfer is
OPEN (name, flags) -> HANDLE, then WRITEs (handle, offset, data) going up or READs (handle, offset,
length) answered by DATA or STATUS(EOF) coming down, many in flight at once, then CLOSE -> STATUS.
The transfer is reported when the server answers the CLOSE, or by close() when the channel ends first.
Requests that change files otherwise (remove, rename, symlink, setstat, mkdir...: observers.sftpchange)
are reported as a ``Change`` with the server's answer, or as unanswered when the channel ends first.

The proxy must hand the observer each direction's bytes before relaying them, so that a reply is
never seen before its request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from terminal.proxy.observers.sftpchange import PendingChange, change_request, status_message
from terminal.proxy.observers.transfer import Change, Direction, OrderedDigest, PendingBudget, Transfer, safe_path
from terminal.proxy.observers.wire import Fields, Framer, ProtocolError

logger = logging.getLogger(__name__)

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_READ, FXP_WRITE = 1, 2, 3, 4, 5, 6
FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_EXTENDED_REPLY = 101, 102, 103, 201
FX_OK, FX_EOF = 0, 1
FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC = 0x01, 0x02, 0x04, 0x08, 0x10

# OpenSSH's sftp-server refuses messages over 256 KiB; a little room for other servers' headers.
MAX_PACKET_LENGTH = 256 * 1024 + 1024
# OpenSSH keeps at most 64 requests in flight; far more is a peer trying to make us remember things.
MAX_PENDING_REQUESTS = 16384
MAX_OPEN_FILES = 4096
HIGHEST_VERSION = 3  # later versions lay OPEN out differently

OnTransfer = Callable[[Transfer], None]
OnChange = Callable[[Change], None]


class _Stream:
    """One direction of one open file."""

    def __init__(self, budget: PendingBudget) -> None:
        self.digest = OrderedDigest(budget)
        self.failed = False  # a WRITE or READ answered with an error, or a DATA larger than asked for
        self.eof_at: int | None = None  # lowest offset a READ was answered with EOF


class _OpenFile:
    def __init__(self, serial: int, path: str, pflags: int, budget: PendingBudget) -> None:
        self.serial = serial
        self.path = path
        self.pflags = pflags
        self._budget = budget
        self.upload: _Stream | None = None
        self.download: _Stream | None = None

    def uploading(self) -> _Stream:
        if self.upload is None:
            self.upload = _Stream(self._budget)
        return self.upload

    def downloading(self) -> _Stream:
        if self.download is None:
            self.download = _Stream(self._budget)
        return self.download

    @property
    def creates(self) -> bool:
        """Opened to create or empty the file: an upload even when no byte follows (a 0-byte put)."""
        return bool(self.pflags & FXF_WRITE and self.pflags & (FXF_CREAT | FXF_TRUNC))


@dataclass
class _Open:
    path: str
    pflags: int


@dataclass
class _Read:
    file: _OpenFile
    offset: int
    length: int


@dataclass
class _Write:
    file: _OpenFile


@dataclass
class _Close:
    file: _OpenFile


class SftpObserver:
    """Reports every file uploaded or downloaded over one sftp channel to ``on_transfer``.

    ``client_data`` / ``server_data`` never raise: a stream that breaks the protocol or its limits
    stops the observing (``failure`` says why, logged once) and close() reports what was open as
    incomplete. ``max_pending_bytes`` bounds the out-of-order data held for hashing, for the whole
    channel; beyond it the file in question is reported incomplete (its size still counts).
    """

    protocol = "sftp"

    def __init__(
        self, on_transfer: OnTransfer, *, on_change: OnChange | None = None, max_pending_bytes: int = 64 * 2**20
    ) -> None:
        self._on_transfer = on_transfer
        self._on_change = on_change
        self._budget = PendingBudget(max_pending_bytes)
        self._client = Framer(MAX_PACKET_LENGTH)
        self._server = Framer(MAX_PACKET_LENGTH)
        self._pending: dict[int, _Open | _Read | _Write | _Close | PendingChange] = {}
        self._handles: dict[bytes, _OpenFile] = {}
        self._closing: dict[int, _OpenFile] = {}  # by serial: CLOSE sent, answer awaited
        self._serial = 0
        self.failure: str | None = None
        self.closed = False

    @property
    def pending_bytes(self) -> int:
        """Bytes of out-of-order content held right now."""
        return self._budget.used

    # --- the channel --------------------------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        self._feed(self._client, self._client_packet, data)

    def server_data(self, data: bytes) -> None:
        self._feed(self._server, self._server_packet, data)

    def close(self) -> None:
        """The channel ended: what is still open was cut off, and is reported incomplete."""
        if self.closed:
            return
        self.closed = True
        cut_off = sorted([*self._handles.values(), *self._closing.values()], key=lambda file: file.serial)
        unanswered = [request for request in self._pending.values() if isinstance(request, PendingChange)]
        self._handles.clear()
        self._closing.clear()
        self._pending.clear()
        for file in cut_off:
            self._report(file, closed=False)
        for change in unanswered:
            self._changed(change.answered("unanswered"))

    def _feed(self, framer: Framer, handle: Callable[[Fields], None], data: bytes) -> None:
        if self.failure is not None or self.closed:
            return
        try:
            for packet in framer.feed(data):
                handle(Fields(packet))
            if framer.error is not None:
                raise ProtocolError(framer.error)
        except ProtocolError as error:
            self._fail(str(error))
        except Exception:  # never into the relay: a bug here must not cut the engineer's session
            logger.exception("sftp observer failed")
            self._fail("internal error")

    def _fail(self, reason: str) -> None:
        self.failure = reason
        logger.warning("sftp observer stopped: %s", reason)

    # --- client -> server ---------------------------------------------------------------------------
    def _client_packet(self, fields: Fields) -> None:
        kind = fields.u8()
        if kind == FXP_INIT:
            return
        request = fields.u32()
        if kind == FXP_OPEN:
            path = safe_path(fields.string())
            self._remember(request, _Open(path, fields.u32()))
        elif kind == FXP_READ:
            file = self._handles.get(bytes(fields.string()))
            if file is not None:
                file.downloading()
                self._remember(request, _Read(file, fields.u64(), fields.u32()))
        elif kind == FXP_WRITE:
            file = self._handles.get(bytes(fields.string()))
            if file is not None:
                offset = fields.u64()
                file.uploading().digest.add(offset, fields.string())
                self._remember(request, _Write(file))
        elif kind == FXP_CLOSE:
            file = self._handles.pop(bytes(fields.string()), None)
            if file is not None:
                self._closing[file.serial] = file
                self._remember(request, _Close(file))
        else:
            change = change_request(kind, fields, self._path_of_handle)
            if change is not None:
                self._remember(request, change)
        # Anything else (stat, opendir/readdir, reading extensions...) changes nothing.

    def _path_of_handle(self, handle: bytes) -> str:
        file = self._handles.get(handle)
        return file.path if file is not None else "(a handle not opened as a file)"

    def _remember(self, request: int, what: _Open | _Read | _Write | _Close | PendingChange) -> None:
        if request not in self._pending and len(self._pending) >= MAX_PENDING_REQUESTS:
            raise ProtocolError(f"more than {MAX_PENDING_REQUESTS} requests in flight")
        replaced = self._pending.get(request)
        if isinstance(replaced, _Close):  # a reused id: that CLOSE will never be matched
            self._closing.pop(replaced.file.serial, None)
            self._report(replaced.file, closed=False)
        elif isinstance(replaced, PendingChange):  # nor that change's answer
            self._changed(replaced.answered("unanswered"))
        self._pending[request] = what

    # --- server -> client ---------------------------------------------------------------------------
    def _server_packet(self, fields: Fields) -> None:
        kind = fields.u8()
        if kind == FXP_VERSION:
            version = fields.u32()
            if version > HIGHEST_VERSION:
                raise ProtocolError(f"sftp version {version} is not observed")
            return
        if kind not in (FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_EXTENDED_REPLY):
            return
        request = self._pending.pop(fields.u32(), None)
        if request is None:
            return  # a reply to something not followed (stat, opendir, extended...)
        if isinstance(request, PendingChange):
            code = fields.u32() if kind == FXP_STATUS else FX_OK
            status = "ok" if code == FX_OK else "failed"
            self._changed(request.answered(status, "" if code == FX_OK else status_message(code, fields)))
        elif kind == FXP_STATUS:
            self._status(request, fields.u32())
        elif kind == FXP_HANDLE and isinstance(request, _Open):
            self._opened(request, bytes(fields.string()))
        elif kind == FXP_DATA and isinstance(request, _Read):
            data = fields.string()
            stream = request.file.downloading()
            if len(data) > request.length:
                stream.failed = True  # more than asked for: OpenSSH's client gives up on such a server
                stream.digest.size += len(data)
            else:
                stream.digest.add(request.offset, data)
        elif isinstance(request, _Close):
            self._closing.pop(request.file.serial, None)
            self._report(request.file, closed=False)

    def _status(self, request: _Open | _Read | _Write | _Close, code: int) -> None:
        if isinstance(request, _Read):
            stream = request.file.downloading()
            if code == FX_EOF:
                stream.eof_at = request.offset if stream.eof_at is None else min(stream.eof_at, request.offset)
            else:
                stream.failed = True
        elif isinstance(request, _Write):
            if code != FX_OK:
                request.file.uploading().failed = True
        elif isinstance(request, _Close):
            self._closing.pop(request.file.serial, None)
            self._report(request.file, closed=code == FX_OK)
        # A failed OPEN opened nothing: no transfer.

    def _opened(self, request: _Open, handle: bytes) -> None:
        stale = self._handles.pop(handle, None)
        if stale is not None:  # the server handed out a handle that is still open
            self._report(stale, closed=False)
        if len(self._handles) >= MAX_OPEN_FILES:
            raise ProtocolError(f"more than {MAX_OPEN_FILES} files open")
        self._serial += 1
        self._handles[handle] = _OpenFile(self._serial, request.path, request.pflags, self._budget)

    # --- reporting ----------------------------------------------------------------------------------
    def _report(self, file: _OpenFile, *, closed: bool) -> None:
        """``closed``: the server confirmed the CLOSE. Handles that moved nothing (and created nothing)
        are not transfers."""
        upload = file.upload
        if upload is None and file.creates:
            upload = file.uploading()
        if upload is not None:
            self._emit(file.path, "upload", upload, closed and not upload.failed)
        if file.download is not None:
            download = file.download
            reached_end = download.eof_at is not None and download.eof_at == download.digest.position
            self._emit(file.path, "download", download, closed and not download.failed and reached_end)

    def _changed(self, change: Change) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(change)
        except Exception:  # the relay goes on; whoever records changes logs its own failure too
            logger.exception("recording an sftp change failed")

    def _emit(self, path: str, direction: Direction, stream: _Stream, complete: bool) -> None:
        digest, contiguous = stream.digest.finish()
        transfer = Transfer(
            path=path,
            direction=direction,
            size=stream.digest.size,
            sha256=digest,
            complete=complete and contiguous,
            protocol="sftp",
        )
        try:
            self._on_transfer(transfer)
        except Exception:  # the relay goes on; whoever records transfers logs its own failure too
            logger.exception("recording an sftp transfer failed")
