"""Watching the sftp subsystem (what `sftp` and modern `scp` speak) for files going up and down.

SFTP version 3 (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it): every packet is a uint32 length,
a type byte, and (after INIT/VERSION) a uint32 request id that the reply repeats. A file transfer is
OPEN (name, flags) -> HANDLE, then WRITEs (handle, offset, data) going up or READs (handle, offset,
length) answered by DATA or STATUS(EOF) coming down, many in flight at once, then CLOSE -> STATUS.
The transfer is reported when the server answers the CLOSE, or by close() when the channel ends first.
Requests that change files otherwise (remove, rename, symlink, setstat, mkdir...: observers.sftpchange)
are reported as a ``Change`` with the server's answer, or as unanswered when the channel ends first.

A client need not wait for the HANDLE: OpenSSH's sftp-server answers in order and its handles are
predictable (the index of a table: 0, 1, ...), so OPEN, WRITE and CLOSE can go in one write. A request
on a handle (READ, WRITE, CLOSE, FSETSTAT, copy-data) that names one not known yet while an OPEN or
OPENDIR sent before it is unanswered waits in the observer (observers.sftpheld), and every such
request after it waits behind it, in order; once those OPENs are answered it is taken as if it came
then (its handle is known now, or never will be and the server refuses it). Every request's id is
followed until its answer: one used again meanwhile could take another's answer, which the observer
cannot tell apart, so it stops. It stops too when too much waits or the channel ends while some does;
``unaccounted`` and ``unaccounted_out`` then hold the bytes that crossed unrecorded and that no report
covers, for the relay to record (see ``SftpObserver``).

The proxy must hand the observer each direction's bytes before relaying them, so that a reply is
never seen before its request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from terminal.proxy.observers.sftpchange import PendingChange, change_request, status_message
from terminal.proxy.observers.sftpheld import Held, HeldRequests, handles_named
from terminal.proxy.observers.sftpstate import (
    UNTRACKED,
    WAITING,
    Close,
    Open,
    OpenDir,
    OpenFile,
    Pending,
    Read,
    Stream,
    Untracked,
    Waiting,
    Write,
)
from terminal.proxy.observers.transfer import Change, Direction, PendingBudget, Transfer, safe_path
from terminal.proxy.observers.wire import Fields, Framer, ProtocolError

logger = logging.getLogger(__name__)

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_READ, FXP_WRITE = 1, 2, 3, 4, 5, 6
FXP_OPENDIR, FXP_SYMLINK, FXP_EXTENDED = 11, 20, 200
FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_NAME, FXP_ATTRS, FXP_EXTENDED_REPLY = 101, 102, 103, 104, 105, 201
# Every request a server answers exactly once (OPEN to SYMLINK, and EXTENDED), and the answers.
REQUESTS = frozenset([*range(FXP_OPEN, FXP_SYMLINK + 1), FXP_EXTENDED])
REPLIES = frozenset({FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_NAME, FXP_ATTRS, FXP_EXTENDED_REPLY})
FX_OK, FX_EOF = 0, 1

# OpenSSH's sftp-server refuses messages over 256 KiB; a little room for other servers' headers.
MAX_PACKET_LENGTH = 256 * 1024 + 1024
# OpenSSH keeps at most 64 requests in flight; far more is a peer trying to make us remember things.
MAX_PENDING_REQUESTS = 16384
MAX_OPEN_FILES = 4096
HIGHEST_VERSION = 3  # later versions lay OPEN out differently

OnTransfer = Callable[[Transfer], None]
OnChange = Callable[[Change], None]


class SftpObserver:
    """Reports every file uploaded or downloaded over one sftp channel to ``on_transfer``.

    ``client_data`` / ``server_data`` never raise: a stream that breaks the protocol or its limits, or
    that the observer cannot follow, stops the observing (``failure`` says why, logged once) and close()
    reports what was open as incomplete. ``max_pending_bytes`` bounds the out-of-order data held for
    hashing, for the whole channel; beyond it the file in question is reported incomplete (its size
    still counts).

    Once stopped, ``unaccounted`` holds the client's bytes that no report covers and that crossed before
    the chunk being fed when it stopped: requests that waited for a handle, and the start of a request cut
    by the stop; ``unaccounted_out`` the instance's: the start of a reply cut by the stop (a DATA's content
    counts once whole). The relay records them, then that chunk and everything after it.
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
        self._pending: dict[int, Pending] = {}  # by request id, every request until its answer
        self._handles: dict[bytes, OpenFile] = {}
        self._dirs: dict[bytes, str] = {}  # handle -> path of a directory opened (OPENDIR)
        self._closing: dict[int, OpenFile] = {}  # by serial: CLOSE sent, answer awaited
        self._held = HeldRequests()
        self._serial = 0
        self._client_fed = 0  # bytes of the client's stream so far
        self._chunk_start = 0  # where the client chunk being fed starts (the end, between chunks)
        self._current: tuple[int, bytes] | None = None  # the client packet being taken: start, body
        self._server_fed = 0  # the same of the server's stream
        self._server_chunk_start = 0
        self._current_reply: tuple[int, bytes] | None = None
        self.failure: str | None = None
        self.unaccounted = b""
        self.unaccounted_out = b""
        self.closed = False

    @property
    def pending_bytes(self) -> int:
        """Bytes of out-of-order content held right now."""
        return self._budget.used

    # --- the channel --------------------------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        if self.failure is not None or self.closed:
            return
        start = self._client_fed - self._client.buffered
        self._client_fed += len(data)
        try:
            self._guarded(lambda: self._client_packets(self._client.feed(data), start))
        finally:
            self._current = None
            self._chunk_start = self._client_fed

    def server_data(self, data: bytes) -> None:
        if self.failure is not None or self.closed:
            return
        start = self._server_fed - self._server.buffered
        self._server_fed += len(data)
        try:
            self._guarded(lambda: self._server_packets(self._server.feed(data), start))
        finally:
            self._current_reply = None
            self._server_chunk_start = self._server_fed

    def close(self) -> None:
        """The channel ended: what is still open was cut off, and is reported incomplete; so is a file
        opened to be created or emptied whose OPEN went unanswered. Requests still waiting for a handle
        stop the observing: the server may have carried them out."""
        if self.closed:
            return
        if len(self._held) and self.failure is None:
            self._fail(f"the channel ended with {len(self._held)} requests waiting for a handle")
        self.closed = True
        cut_off = sorted([*self._handles.values(), *self._closing.values()], key=lambda file: file.serial)
        opening = [request for request in self._pending.values() if isinstance(request, Open)]
        unanswered = [request for request in self._pending.values() if isinstance(request, PendingChange)]
        self._handles.clear()
        self._dirs.clear()
        self._closing.clear()
        self._pending.clear()
        self._held.clear()
        for file in cut_off:
            self._report(file, closed=False)
        for request in opening:
            self._serial += 1
            self._report(OpenFile(self._serial, request.path, request.pflags, self._budget), closed=False)
        for change in unanswered:
            self._changed(change.answered("unanswered"))

    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except ProtocolError as error:
            self._fail(str(error))
        except Exception:  # never into the relay: a bug here must not cut the engineer's session
            logger.exception("sftp observer failed")
            self._fail("internal error")

    def _fail(self, reason: str) -> None:
        self.failure = reason
        held = [(held.end - 4 - len(held.body), held.raw) for held in self._held.all()]
        self.unaccounted = _crossed(held, self._current, self._client, self._client_fed, self._chunk_start)
        self.unaccounted_out = _crossed(
            [], self._current_reply, self._server, self._server_fed, self._server_chunk_start
        )
        self._held.clear()
        logger.warning("sftp observer stopped: %s", reason)

    # --- client -> server ---------------------------------------------------------------------------
    def _client_packets(self, packets: list[bytes], start: int) -> None:
        for body in packets:
            self._current = (start, body)
            start += 4 + len(body)
            self._client_packet(body, start)
        self._current = None
        if self._client.error is not None:
            raise ProtocolError(self._client.error)

    def _client_packet(self, body: bytes, end: int) -> None:
        fields = Fields(body)
        kind = fields.u8()
        if kind not in REQUESTS:
            return  # INIT, or nothing a server answers
        request = fields.u32()
        if request in self._pending:  # its answer and the other's could not be told apart
            raise ProtocolError(f"request id {request} used again while in flight")
        if len(self._pending) >= MAX_PENDING_REQUESTS:
            raise ProtocolError(f"more than {MAX_PENDING_REQUESTS} requests in flight")
        handles = handles_named(kind, body)
        if handles and (
            len(self._held) or (not self._known(handles) and self._held.may_still_open(self._held.opens_sent))
        ):
            self._held.hold(Held(body, end, handles, self._held.opens_sent))
            self._pending[request] = WAITING
            return
        self._request(kind, request, fields)

    def _request(self, kind: int, request: int, fields: Fields) -> None:
        """Take a request (its kind and id read): what its answer will tell."""
        what: Pending = UNTRACKED
        if kind == FXP_OPEN:
            path = safe_path(fields.string())
            what = Open(path, fields.u32(), self._held.open_sent())
        elif kind == FXP_OPENDIR:
            what = OpenDir(safe_path(fields.string()), self._held.open_sent())
        elif kind == FXP_READ:
            file = self._handles.get(bytes(fields.string()))
            if file is not None:
                file.downloading()
                what = Read(file, fields.u64(), fields.u32())
        elif kind == FXP_WRITE:
            file = self._handles.get(bytes(fields.string()))
            if file is not None:
                offset = fields.u64()
                file.uploading().digest.add(offset, fields.string())
                what = Write(file)
        elif kind == FXP_CLOSE:
            handle = bytes(fields.string())
            file = self._handles.pop(handle, None)
            if file is not None:
                self._closing[file.serial] = file
                what = Close(file)
            else:
                self._dirs.pop(handle, None)
        else:
            what = change_request(kind, fields, self._path_of_handle) or UNTRACKED
        # Anything else (stat, readdir, reading extensions...) changes nothing; a handle never given is
        # refused by the server.
        self._pending[request] = what

    def _known(self, handles: tuple[bytes, ...]) -> bool:
        return all(handle in self._handles or handle in self._dirs for handle in handles)

    def _path_of_handle(self, handle: bytes) -> str:
        file = self._handles.get(handle)
        if file is not None:
            return file.path
        return self._dirs.get(handle, "(a handle not opened)")

    def _release(self) -> None:
        """Take the held requests, in order, as far as each one's handle is known or never will be."""
        while (held := self._held.first()) is not None:
            if not self._known(held.handles) and self._held.may_still_open(held.opens_before):
                return
            fields = Fields(held.body)
            kind, request = fields.u8(), fields.u32()
            del self._pending[request]
            self._request(kind, request, fields)
            self._held.take()  # only now: one that breaks the protocol is still among the unaccounted

    # --- server -> client ---------------------------------------------------------------------------
    def _server_packets(self, packets: list[bytes], start: int) -> None:
        for body in packets:
            self._current_reply = (start, body)
            start += 4 + len(body)
            self._server_packet(Fields(body))
        self._current_reply = None
        if self._server.error is not None:
            raise ProtocolError(self._server.error)

    def _server_packet(self, fields: Fields) -> None:
        kind = fields.u8()
        if kind == FXP_VERSION:
            version = fields.u32()
            if version > HIGHEST_VERSION:
                raise ProtocolError(f"sftp version {version} is not observed")
            return
        if kind not in REPLIES:
            return
        request = self._pending.pop(fields.u32(), None)
        if request is None or isinstance(request, Untracked):
            return
        if isinstance(request, Waiting):  # answered before a request sent earlier: not in order
            raise ProtocolError("an answer to a request still waiting for its handle")
        if isinstance(request, (Open, OpenDir)):
            self._open_answered(request, bytes(fields.string()) if kind == FXP_HANDLE else None)
        elif isinstance(request, PendingChange):
            code = fields.u32() if kind == FXP_STATUS else FX_OK
            status = "ok" if code == FX_OK else "failed"
            self._changed(request.answered(status, "" if code == FX_OK else status_message(code, fields)))
        elif kind == FXP_STATUS:
            self._status(request, fields.u32())
        elif kind == FXP_DATA and isinstance(request, Read):
            data = fields.string()
            stream = request.file.downloading()
            if len(data) > request.length:
                stream.failed = True  # more than asked for: OpenSSH's client gives up on such a server
                stream.digest.size += len(data)
            else:
                stream.digest.add(request.offset, data)
        elif isinstance(request, Close):
            self._closing.pop(request.file.serial, None)
            self._report(request.file, closed=False)

    def _status(self, request: Read | Write | Close, code: int) -> None:
        if isinstance(request, Read):
            stream = request.file.downloading()
            if code == FX_EOF:
                stream.eof_at = request.offset if stream.eof_at is None else min(stream.eof_at, request.offset)
            else:
                stream.failed = True
        elif isinstance(request, Write):
            if code != FX_OK:
                request.file.uploading().failed = True
        else:
            self._closing.pop(request.file.serial, None)
            self._report(request.file, closed=code == FX_OK)

    def _open_answered(self, request: Open | OpenDir, handle: bytes | None) -> None:
        """A HANDLE (anything else, a failed OPEN, opened nothing); then what waited for it."""
        self._held.open_answered(request.number)
        if handle is not None:
            stale = self._handles.pop(handle, None)
            if stale is not None:  # the server handed out a handle that is still open
                self._report(stale, closed=False)
            self._dirs.pop(handle, None)
            if len(self._handles) + len(self._dirs) >= MAX_OPEN_FILES:
                raise ProtocolError(f"more than {MAX_OPEN_FILES} files open")
            if isinstance(request, OpenDir):
                self._dirs[handle] = request.path
            else:
                self._serial += 1
                self._handles[handle] = OpenFile(self._serial, request.path, request.pflags, self._budget)
        self._release()

    # --- reporting ----------------------------------------------------------------------------------
    def _report(self, file: OpenFile, *, closed: bool) -> None:
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

    def _emit(self, path: str, direction: Direction, stream: Stream, complete: bool) -> None:
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


def _crossed(
    held: list[tuple[int, bytes]], current: tuple[int, bytes] | None, framer: Framer, fed: int, chunk_start: int
) -> bytes:
    """One direction's bytes before the chunk being fed (``chunk_start``; all of them, between chunks) that
    no report covers: the ``held`` packets (start, raw), the one being taken (start, body), the start of one
    not yet whole."""
    pieces = list(held)
    if current is not None:
        start, body = current
        pieces.append((start, len(body).to_bytes(4, "big") + body))
    pieces.append((fed - framer.buffered, framer.pending()))
    return b"".join(raw[: max(0, chunk_start - start)] for start, raw in pieces)
