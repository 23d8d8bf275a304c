"""Watching legacy scp (`scp -O`: the remote runs "scp -t TARGET" or "scp -f SOURCE...") for files.

One side is the source, the other the sink (for an upload the client is the source). The sink starts
with one answer byte; the source then sends a record line and waits for the sink's answer each time:
"C<mode> <size> <name>\\n" announces a file, whose <size> bytes follow only once the sink accepted it,
then the source's status ("\\0", or "\\1message\\n" when reading failed) and the sink's final answer;
"D<mode> 0 <name>\\n" enters a directory (-r) until "E\\n"; "T<mtime> 0 <atime> 0\\n" carries times (-p).
An answer is "\\0" (fine), "\\1message\\n" (that record failed) or "\\2message\\n" (fatal, the sink gives up).
A source line starting "\\1" / "\\2" is an error report that the sink does not answer.

The proxy must hand the observer each direction's bytes before relaying them, so that an answer is
never seen before what it answers. A source may send ahead of the answers (the sink reads its input in
order), and the observer holds such bytes until the answer comes: they have crossed already. So when it
stops, or the channel ends before the answer, ``unaccounted`` / ``unaccounted_out`` hand the relay the
source's bytes that crossed unrecorded and that no report covers, for it to record (see ``ScpObserver``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence

from terminal.proxy.observers.scpcommand import parse_scp_command
from terminal.proxy.observers.transfer import Direction, Transfer, join_path, safe_path
from terminal.proxy.observers.wire import ProtocolError

logger = logging.getLogger(__name__)

# OpenSSH's sink reads a record into 2 KiB; names come from paths of at most PATH_MAX (4 KiB).
MAX_LINE = 8192
FILE_RECORD = re.compile(rb"([CD])([0-7]{4}) ([0-9]{1,20}) (.+)", re.DOTALL)
TIMES_RECORD = re.compile(rb"T[0-9]{1,20} [0-9]{1,6} [0-9]{1,20} [0-9]{1,6}")

OnTransfer = Callable[[Transfer], None]


class _File:
    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.remaining = size
        self.size = 0
        self.sha = hashlib.sha256()
        self.source_ok = True


class ScpObserver:
    """Reports every file one legacy scp channel carries to ``on_transfer``.

    ``client_data`` / ``server_data`` never raise: a stream that breaks the protocol stops the
    observing (``failure`` says why, logged once) and close() reports a file cut off midway as
    incomplete. Bytes either way after the protocol ended (a fatal answer or error) are a failure
    too: whatever carries on over the channel is no longer scp. So is the channel ending while some of
    the source's bytes wait for an answer: the sink may have acted on them.

    The source's bytes are accounted for once the sink answered them, or once they are a file's content
    (reported, incomplete if cut off). Once stopped, the source's bytes that crossed before the chunk being
    fed and are not accounted for (a record not yet answered, what was sent ahead of its answer, a line cut
    short) are ``unaccounted`` (an upload: the client's) or ``unaccounted_out`` (a download: the
    instance's). The relay records them, then that chunk and everything after it.
    """

    protocol = "scp"

    def __init__(
        self,
        on_transfer: OnTransfer,
        *,
        direction: Direction,
        paths: Sequence[str],
        to_directory: bool = False,
    ) -> None:
        if not paths:
            raise ValueError("scp needs a target or at least one source")
        self._on_transfer = on_transfer
        self.direction: Direction = direction
        self.paths = tuple(safe_path(path.encode("utf-8", "surrogateescape")) for path in paths)
        self.to_directory = to_directory
        self._state = "wait"  # line | data | status | status-line | wait | done
        self._awaiting: tuple[str, str] | None = ("ready", "")
        self._line = bytearray()
        self._held = bytearray()  # source bytes that came before the answer they wait for
        self._answer_line: bytearray | None = None
        self._announced: tuple[str, int] | None = None
        self._dirs: list[str] = []
        self._file: _File | None = None
        self.failure: str | None = None
        self.unaccounted = b""
        self.unaccounted_out = b""
        self._channel_closed = False
        # Offsets in the source's stream: the bytes fed, where the parser is (what is held comes after it),
        # and up to where every byte is accounted for; the bytes from there to the end of the chunks before
        # the one being fed are kept, from _kept_from.
        self._source_fed = 0
        self._consumed = 0
        self._accounted = 0
        self._kept = bytearray()
        self._kept_from = 0
        self._chunk_start: int | None = None  # where the source's chunk being fed starts

    @classmethod
    def for_command(cls, command: str, on_transfer: OnTransfer) -> ScpObserver | None:
        """The observer for an exec request, or None when it is not a plain legacy scp command."""
        parsed = parse_scp_command(command)
        if parsed is None:
            return None
        return cls(on_transfer, direction=parsed.direction, paths=parsed.paths, to_directory=parsed.to_directory)

    # --- the channel --------------------------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        self._feed(data, source=self.direction == "upload")

    def server_data(self, data: bytes) -> None:
        self._feed(data, source=self.direction == "download")

    def close(self) -> None:
        """The channel ended: a file still under way is reported incomplete; source bytes not answered
        stop the observing, so that they are recorded."""
        waiting = self._source_fed - self._accounted
        if waiting and self.failure is None and not self._channel_closed:
            self._fail(f"the channel ended with {waiting} bytes of scp not answered")
        self._channel_closed = True
        self._end()

    def _end(self) -> None:
        self._state = "done"
        if self._file is not None:
            self._report(complete=False)

    def _feed(self, data: bytes, *, source: bool) -> None:
        if self.failure is not None or (self._state == "done" and (not data or self._channel_closed)):
            return
        if source:
            self._chunk_start = self._source_fed
            self._source_fed += len(data)
        try:
            if self._state == "done":
                raise ProtocolError("data after the scp protocol ended")
            (self._source if source else self._sink)(memoryview(data))
        except ProtocolError as error:
            self._fail(str(error))
        except Exception:  # never into the relay: a bug here must not cut the engineer's session
            logger.exception("scp observer failed")
            self._fail("internal error")
        finally:
            self._keep(data if source else b"")
            self._chunk_start = None

    def _keep(self, chunk: bytes) -> None:
        """After a chunk (``chunk``: the source's, else empty): keep the source's bytes not accounted for."""
        chunk_start = self._source_fed - len(chunk)
        if self._accounted >= chunk_start:
            self._kept = bytearray(chunk[self._accounted - chunk_start :])
        else:
            del self._kept[: self._accounted - self._kept_from]
            self._kept += chunk
        self._kept_from = self._accounted

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self._state = "done"
        # What crossed before the source's chunk being fed (all of it, between chunks or on the sink's).
        end = self._source_fed if self._chunk_start is None else self._chunk_start
        crossed = bytes(self._kept[self._accounted - self._kept_from : end - self._kept_from])
        if self.direction == "upload":
            self.unaccounted = crossed
        else:
            self.unaccounted_out = crossed
        logger.warning("scp observer stopped: %s", reason)

    # --- the source's side --------------------------------------------------------------------------
    def _source(self, data: memoryview) -> None:
        """The source's bytes from where the parser is (``_consumed``): fed now, or held until an answer."""
        start, position = self._consumed, 0
        while position < len(data) and self._state != "done":
            if self._state == "wait":
                if len(self._held) + len(data) - position > MAX_LINE:
                    raise ProtocolError("the source ran ahead of the sink's answer")
                self._held += data[position:]
                return
            if self._state == "data":
                file = self._file
                assert file is not None
                chunk = data[position : position + file.remaining]
                file.sha.update(chunk)
                file.size += len(chunk)
                file.remaining -= len(chunk)
                position += len(chunk)
                self._accounted = start + position  # the file's, which is reported
                if file.remaining == 0:
                    self._state = "status"
            elif self._state == "status":
                if data[position] == 0:
                    self._expect("file")
                    self._accounted = start + position + 1
                else:  # the source could not read its file: an error line instead of the final \0
                    assert self._file is not None
                    self._file.source_ok = False
                    self._state = "status-line"
                position += 1
            else:
                position = self._collect_line(data, position)
                if self._state in ("line", "done") and not self._line:  # an error report nobody answers
                    self._accounted = start + position
            self._consumed = start + position
        _nothing_after_the_end(self._state, data, position)

    def _collect_line(self, data: memoryview, position: int) -> int:
        chunk = bytes(data[position : position + MAX_LINE + 1 - len(self._line)])
        end = chunk.find(b"\n")
        if end < 0:
            self._line += chunk
            if len(self._line) > MAX_LINE:
                raise ProtocolError("record line too long")
            return position + len(chunk)
        self._line += chunk[:end]
        line = bytes(self._line)
        self._line.clear()
        if self._state == "status-line":
            self._expect("file")
        else:
            self._record(line)
        return position + end + 1

    def _record(self, line: bytes) -> None:
        kind = line[:1]
        if kind in (b"\x01", b"\x02"):  # the source reports an error; nobody answers it
            if kind == b"\x02":
                self._state = "done"
            return
        if kind == b"E":
            self._expect("E")
        elif kind == b"T":
            if TIMES_RECORD.fullmatch(line) is None:
                raise ProtocolError("malformed times record")
            self._expect("T")
        elif (match := FILE_RECORD.fullmatch(line)) is not None:
            path = self._path_of(safe_path(match[4]))
            if match[1] == b"C":
                self._announced = (path, int(match[3]))
                self._expect("C")
            else:
                self._expect("D", path)
        else:
            raise ProtocolError("unexpected record")

    def _expect(self, what: str, path: str = "") -> None:
        self._awaiting = (what, path)
        self._state = "wait"

    def _path_of(self, name: str) -> str:
        if self._dirs:
            return join_path(self._dirs[-1], name)
        if self.direction == "upload":
            target = self.paths[0]
            # The sink writes to TARGET itself unless it is a directory, which the observer cannot see:
            # joined, unless the target already ends with this very name (`scp f host:dir/f`).
            if not self.to_directory and _basename(target) == name:
                return target
            return join_path(target, name)
        # A download's records name the source's last component: put it back where it came from.
        source = next((path for path in self.paths if _basename(path) == name), self.paths[0])
        return join_path(_dirname(source), name)

    # --- the sink's side ----------------------------------------------------------------------------
    def _sink(self, data: memoryview) -> None:
        position = 0
        while position < len(data) and self._state != "done":
            if self._answer_line is None:
                first = data[position]
                position += 1
                if first == 0:
                    self._answered(ok=True, fatal=False)
                elif self.direction == "download" and self._awaiting == ("ready", ""):
                    # The sink is the client's scp, which starts with "\0" whatever happens: anything else is
                    # not scp (a program named scp on the instance's PATH, fed what it will run).
                    raise ProtocolError("the client did not start as an scp sink")
                else:
                    self._answer_line = bytearray([first])
                continue
            chunk = bytes(data[position : position + MAX_LINE + 1 - len(self._answer_line)])
            end = chunk.find(b"\n")
            if end < 0:
                self._answer_line += chunk
                if len(self._answer_line) > MAX_LINE:
                    raise ProtocolError("answer line too long")
                position += len(chunk)
                continue
            position += end + 1
            fatal = self._answer_line[0] == 2
            self._answer_line = None
            self._answered(ok=False, fatal=fatal)
        _nothing_after_the_end(self._state, data, position)

    def _answered(self, *, ok: bool, fatal: bool) -> None:
        if self._awaiting is None:
            raise ProtocolError("an answer to nothing")
        what, path = self._awaiting
        self._awaiting = None
        self._accounted = self._consumed  # what it answers, and all before; what is held comes after
        self._state = "line"
        if what == "C" and ok:
            assert self._announced is not None
            self._file = _File(*self._announced)
            self._state = "data" if self._file.remaining else "status"
        elif what == "D" and ok:
            self._dirs.append(path)
        elif what == "E" and self._dirs:
            self._dirs.pop()
        elif what == "file":
            self._report(complete=ok)
        if fatal or (what == "ready" and not ok):
            self._end()
            return
        held = bytes(self._held)
        self._held.clear()
        if held:
            self._source(memoryview(held))

    def _report(self, *, complete: bool) -> None:
        file, self._file = self._file, None
        assert file is not None
        transfer = Transfer(
            path=file.path,
            direction=self.direction,
            size=file.size,
            sha256=file.sha.hexdigest(),
            complete=complete and file.source_ok and file.remaining == 0,
            protocol="scp",
        )
        try:
            self._on_transfer(transfer)
        except Exception:  # the relay goes on; whoever records transfers logs its own failure too
            logger.exception("recording an scp transfer failed")


def _nothing_after_the_end(state: str, data: memoryview, position: int) -> None:
    if state == "done" and position < len(data):
        raise ProtocolError("data after the scp protocol ended")


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _dirname(path: str) -> str:
    stripped = path.rstrip("/")
    if "/" not in stripped:
        return "" if stripped else "/"
    return stripped.rsplit("/", 1)[0] or "/"
