"""The sftp requests that change files other than by their content: what the sftp observer reports as a
``Change`` once the server answers (draft-ietf-secsh-filexfer-02 and OpenSSH's extensions).

REMOVE, RMDIR, MKDIR, RENAME, SYMLINK, SETSTAT and FSETSTAT, and the extended requests posix-rename,
hardlink, lsetstat and copy-data; any other extended request that is not known to only read is reported
as "extended" with its name. OpenSSH sends SYMLINK's two paths the other way round from the draft (the
target first, then the link), as its sftp-server reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from terminal.proxy.observers.transfer import Change, safe_path
from terminal.proxy.observers.wire import Fields, ProtocolError

FXP_SETSTAT, FXP_FSETSTAT, FXP_REMOVE, FXP_MKDIR, FXP_RMDIR = 9, 10, 13, 14, 15
FXP_RENAME, FXP_SYMLINK, FXP_EXTENDED = 18, 20, 200
CHANGE_REQUESTS = frozenset({FXP_SETSTAT, FXP_FSETSTAT, FXP_REMOVE, FXP_MKDIR, FXP_RMDIR, FXP_RENAME, FXP_SYMLINK})
ATTR_SIZE, ATTR_UIDGID, ATTR_PERMISSIONS, ATTR_ACMODTIME, ATTR_EXTENDED = 0x1, 0x2, 0x4, 0x8, 0x80000000
# Extended requests that only read (or flush): not changes.
READING_EXTENSIONS = frozenset(
    {
        b"statvfs@openssh.com",
        b"fstatvfs@openssh.com",
        b"fsync@openssh.com",
        b"limits@openssh.com",
        b"expand-path@openssh.com",
        b"home-directory",
        b"users-groups-by-id@openssh.com",
    }
)
STATUS_NAMES = {
    1: "end of file",
    2: "no such file",
    3: "permission denied",
    4: "failure",
    5: "bad message",
    6: "no connection",
    7: "connection lost",
    8: "operation unsupported",
}


@dataclass
class PendingChange:
    operation: str
    path: str
    target: str = ""
    attributes: dict[str, int | str] = field(default_factory=dict)

    def answered(self, status: str, message: str = "") -> Change:
        return Change(self.operation, self.path, status, self.target, self.attributes, message)


def change_request(kind: int, fields: Fields, path_of_handle: Callable[[bytes], str]) -> PendingChange | None:
    """The change a client request asks for (its request id already read), or None for any other."""
    if kind == FXP_REMOVE:
        return PendingChange("remove", _path(fields))
    if kind == FXP_RMDIR:
        return PendingChange("rmdir", _path(fields))
    if kind == FXP_MKDIR:
        return PendingChange("mkdir", _path(fields), attributes=attributes(fields))
    if kind == FXP_RENAME:
        old = _path(fields)
        return PendingChange("rename", _path(fields), target=old)
    if kind == FXP_SYMLINK:
        target = _path(fields)
        return PendingChange("symlink", _path(fields), target=target)
    if kind == FXP_SETSTAT:
        return PendingChange("setstat", _path(fields), attributes=attributes(fields))
    if kind == FXP_FSETSTAT:
        path = path_of_handle(bytes(fields.string()))
        return PendingChange("setstat", path, attributes=attributes(fields))
    if kind == FXP_EXTENDED:
        return _extended(bytes(fields.string()), fields, path_of_handle)
    return None


def _extended(name: bytes, fields: Fields, path_of_handle: Callable[[bytes], str]) -> PendingChange | None:
    if name in READING_EXTENSIONS:
        return None
    if name in (b"posix-rename@openssh.com", b"hardlink@openssh.com"):
        old = _path(fields)
        operation = "rename" if name.startswith(b"posix-rename") else "hardlink"
        return PendingChange(operation, _path(fields), target=old)
    if name == b"lsetstat@openssh.com":
        return PendingChange("setstat", _path(fields), attributes=attributes(fields))
    if name == b"copy-data":
        source = path_of_handle(bytes(fields.string()))
        fields.u64()  # read offset
        fields.u64()  # length
        return PendingChange("copy-data", path_of_handle(bytes(fields.string())), target=source)
    return PendingChange("extended", "", attributes={"request": safe_path(name)[:200]})


def attributes(fields: Fields) -> dict[str, int | str]:
    """The ATTRS a setstat or mkdir asks for: size, uid/gid, mode (octal text), times, extension names."""
    flags = fields.u32()
    found: dict[str, int | str] = {}
    if flags & ATTR_SIZE:
        found["size"] = fields.u64()
    if flags & ATTR_UIDGID:
        found["uid"], found["gid"] = fields.u32(), fields.u32()
    if flags & ATTR_PERMISSIONS:
        found["mode"] = f"{fields.u32() & 0o7777:04o}"
    if flags & ATTR_ACMODTIME:
        found["atime"], found["mtime"] = fields.u32(), fields.u32()
    if flags & ATTR_EXTENDED:
        count = fields.u32()
        if count > 64:
            raise ProtocolError("too many extended attributes")
        names = []
        for _ in range(count):
            names.append(safe_path(fields.string())[:200])
            fields.string()
        found["extended"] = ", ".join(names)
    return found


def status_message(code: int, fields: Fields) -> str:
    """Why the server refused: its own message (as data) or, without one, the status code's name."""
    try:
        message = safe_path(fields.string())[:300]
    except ProtocolError:
        message = ""
    return message or STATUS_NAMES.get(code, f"status {code}")


def _path(fields: Fields) -> str:
    return safe_path(fields.string())
