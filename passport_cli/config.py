"""Where the CLI keeps its state: the config dir, the credentials file (mode 0600) and keys."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from passport_cli.display import printable
from passport_cli.errors import CliError, Exit

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; write_private's own temporary file still keeps writes whole
    fcntl = None  # type: ignore[assignment]


def config_dir() -> Path:
    """``$PASSPORT_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/passport``, else ``~/.config/passport``; absolute.

    A relative ``PASSPORT_CONFIG_DIR`` is taken from the directory passport runs in; a relative
    ``XDG_CONFIG_HOME`` is ignored, as the XDG spec says. ssh runs ``passport proxy`` from wherever
    ssh runs, so `connect` and `ssh-config` pass it this directory (``pinned_config_dir``).
    """
    explicit = os.environ.get("PASSPORT_CONFIG_DIR")
    if explicit:
        return Path(explicit).absolute()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or ".")
    base = xdg if xdg.is_absolute() else Path.home() / ".config"
    return (base / "passport").absolute()


def pinned_config_dir() -> Path | None:
    """``config_dir()`` when it is not the default, for the ``passport proxy`` that ssh runs with its own
    environment and working directory; None when the default would be found anyway."""
    chosen = config_dir()
    return None if chosen == (Path.home() / ".config" / "passport").absolute() else chosen


def ensure_private_dir(path: Path) -> Path:
    """``path`` (the config dir or a directory in it), made 0700 if missing, once ``check_private``
    finds it, and the config dir above it, this user's own, and ``check_config_dir`` finds no one else
    could swap the config dir: a CliError otherwise. An OSError when it cannot be made."""
    root = config_dir()
    inside = path != root and path.is_relative_to(root)
    if inside:
        ensure_private_dir(path.parent)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if inside:
        check_private(path, directory=True)
    else:
        check_config_dir(path)
    with contextlib.suppress(OSError):
        path.chmod(0o700)  # what check_private let pass: this user's, at most readable by others
    return path


def check_private(path: Path, *, directory: bool, follow: bool = False) -> os.stat_result:
    """The status of ``path`` once it is a directory (or a regular file) of this user's that no one
    else may write to, as ssh's StrictModes; a CliError naming it and the fix otherwise. Someone
    else's config dir, keys/ or certs/ could hand the portal their key to certify, or rewrite
    the sign-in, known_hosts or ssh_config. A symbolic link is refused unless ``follow`` (the config
    dir itself may be one: the directory it names is checked). Only the kind is checked on Windows."""
    try:
        info = path.stat() if follow else path.lstat()
    except OSError as error:
        raise CliError(f"Cannot use {printable(path)}: {printable(error.strerror or error)}") from error
    if stat.S_ISLNK(info.st_mode):
        raise CliError(
            f"{printable(path)} is a symbolic link: passport keeps its keys and sign-in only in files of its own. "
            "Remove it (passport makes it again)."
        )
    kind = "directory" if directory else "file"
    if not (stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)):
        raise CliError(f"{printable(path)} is not a {kind}: remove it (passport makes it again).")
    if os.name == "nt":
        return info
    uid = os.getuid()
    if info.st_uid != uid:
        raise CliError(
            f"{printable(path)} belongs to uid {info.st_uid}, not to you (uid {uid}): its owner could change the "
            "key the portal certifies and your sign-in. Use a config dir of your own (unset PASSPORT_CONFIG_DIR "
            "or point it at one), or `chown` this one to yourself."
        )
    if info.st_mode & 0o022:
        raise CliError(
            f"{printable(path)} can be written by others (mode {stat.S_IMODE(info.st_mode):o}): they could change "
            f"the key the portal certifies and your sign-in. Run `chmod {700 if directory else 600} {printable(path)}` "
            "if nobody else has, or remove it."
        )
    return info


def check_config_dir(path: Path) -> None:
    """``check_private`` for the config dir itself (which may be a link), and the directories above it,
    as ssh's StrictModes checks those above ~/.ssh: whoever may rename entries in one of them could swap
    the config dir for one of their own. Each must be root's or this user's, and written by no one else
    unless it is sticky (as /tmp: others cannot rename what is not theirs there; OpenSSH refuses even
    those). From the home directory up, nothing is checked, as OpenSSH does: that part of the tree is
    the system's (a link that leads to home lies somewhere, and that is checked). A link on the way is
    followed, and both the directories it lies in and those it leads through are checked, for a link met
    inside another link's target as well; the link itself must be root's or this user's."""
    check_private(path, directory=True, follow=True)
    if os.name == "nt":
        return
    uid = os.getuid()
    for directory, info in _ancestors(path):
        if info.st_uid not in (0, uid):
            raise CliError(
                f"{printable(directory)} belongs to uid {info.st_uid}, not to you (uid {uid}) or root: its owner "
                f"could swap {printable(path)} for a directory of their own, with their key in it. Use a config "
                "dir elsewhere (unset PASSPORT_CONFIG_DIR or point it at one)."
            )
        if stat.S_ISDIR(info.st_mode) and info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise CliError(
                f"{printable(directory)} can be written by others (mode {stat.S_IMODE(info.st_mode):o}) and is not "
                f"sticky: they could swap {printable(path)} for a directory of their own, with their key in it. "
                f"Run `chmod go-w {printable(directory)}` (`chmod +t` for a shared one such as /tmp), or use a "
                "config dir elsewhere."
            )


_MOST_LINKS = 40  # links one lookup may follow, as Linux's own bound: beyond it, a loop


def _ancestors(path: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """The directories whose writers could change where ``path`` leads, each with its status, once; each
    link on the way with the link's own status. ``path`` is resolved one name at a time, as realpath does:
    every link met (in a link's target too) is given, and the directories it lies in; so are those the
    path it resolves to lies in, and those ``..`` leaves. Each such run of directories goes up to the
    home directory or /: it stops at home only where the real path reaches it, never because a link
    leads there. An OSError or a loop of links is a CliError."""
    try:
        home: Path | None = Path.home().resolve()
    except (RuntimeError, OSError):  # no home directory to be found
        home = None
    seen: set[Path] = set()

    def above(place: Path) -> Iterator[tuple[Path, os.stat_result]]:
        for directory in place.parents:  # real directories: ``place`` lies in a resolved one
            if directory in seen:
                return  # and all those above it too
            seen.add(directory)
            yield directory, _status(directory, follow=True)
            if directory == home:
                return

    current, links = Path("/"), 0
    pending = list(reversed(path.absolute().parts[1:]))  # the names still to look up, the next one last
    while pending:
        name = pending.pop()
        if name == "..":
            yield from above(current)  # whoever renames entries there could move what ".." leads back to
            current = current.parent
            continue
        place = current / name
        info = _status(place, follow=False)
        if not stat.S_ISLNK(info.st_mode):
            current = place
            continue
        links += 1
        if links > _MOST_LINKS:
            raise CliError(f"Cannot use {printable(path)}: {os.strerror(errno.ELOOP)}")
        if place not in seen:
            seen.add(place)
            yield place, info
        yield from above(place)
        try:
            target = Path(os.readlink(place))
        except OSError as error:
            raise CliError(f"Cannot use {printable(place)}: {printable(error.strerror or error)}") from error
        if target.is_absolute():
            current = Path("/")
        pending += reversed(target.parts[1:] if target.is_absolute() else target.parts)
    yield from above(current)


def _status(path: Path, *, follow: bool) -> os.stat_result:
    try:
        return path.stat() if follow else path.lstat()
    except OSError as error:
        raise CliError(f"Cannot use {printable(path)}: {printable(error.strerror or error)}") from error


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, created with mode 0600 (never readable in between).

    Its directory is made 0700 if it is the CLI's own (under ``config_dir()``); a directory the
    person named (``-o``) is created if missing, and otherwise left as it is. The text goes to a
    temporary file of this process's own (two CLIs may write the same file at once) that then
    replaces ``path``. A file that cannot be written is a CliError (exit 1) naming it."""
    try:
        _make_directory_of(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    except OSError as error:
        raise _cannot_write(path, error) from error
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _cannot_write(path, error) from error
    with contextlib.suppress(OSError):
        path.chmod(0o600)


def _make_directory_of(path: Path) -> None:
    """The directory ``write_private`` writes ``path`` in: the CLI's own made private, another made if missing."""
    if path.parent.resolve().is_relative_to(config_dir().resolve()):
        ensure_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)


def _cannot_write(path: Path, error: OSError) -> CliError:
    return CliError(f"cannot write {printable(path)}: {printable(error.strerror or error)}")


def _probe(directory: Path) -> None:
    """Create a file in ``directory`` and remove it (OSError if it cannot be): neither mode bits nor
    ``os.access`` tell for root or a read-only mount."""
    fd, probe = tempfile.mkstemp(prefix=".probe.", dir=directory)
    os.close(fd)
    os.unlink(probe)


def check_writable_dir(path: Path) -> None:
    """CliError (exit 1) unless files can be created in ``path`` (made 0700 if missing)."""
    try:
        ensure_private_dir(path)
        _probe(path)
    except OSError as error:
        raise _cannot_write(path, error) from error


def check_writable_file(path: Path) -> None:
    """CliError (exit 1, the message ``write_private`` would give) unless ``write_private`` can write
    ``path``: for a command to find out before it asks the portal for what it would write there."""
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        _make_directory_of(path)
        _probe(path.parent)
        _check_replaceable(path)
    except OSError as error:
        raise _cannot_write(path, error) from error


def _check_replaceable(path: Path) -> None:
    """PermissionError (EPERM) when ``path`` is another user's in a sticky directory (as /tmp) that is
    not this user's either: the kernel refuses ``write_private``'s replacing it, though a new file can be
    made beside it. Root is let through, as the kernel lets root (CAP_FOWNER) replace it."""
    if os.name == "nt" or os.geteuid() == 0:
        return
    uid = os.geteuid()
    try:
        info = path.lstat()
    except FileNotFoundError:
        return  # nothing to replace
    directory = path.parent.stat()
    if info.st_uid != uid and directory.st_mode & stat.S_ISVTX and directory.st_uid != uid:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock (fcntl, on ``.NAME.lock`` beside it; none on Windows) for a read-modify-write
    of ``path``, so two CLIs rewriting it one after the other keep each other's changes."""
    try:
        ensure_private_dir(path.parent)
        fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise _cannot_write(path, error) from error
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


@dataclass
class Credentials:
    portal: str
    token: str
    expires_at: str  # ISO 8601
    username: str = ""
    # Whether the person signed in with --insecure-http, to an http:// portal on another host: only then
    # do later commands send this token in clear (a file of an older CLI has no such key: not chosen).
    insecure_http: bool = False

    def expiry(self) -> datetime | None:
        try:
            moment = datetime.fromisoformat(self.expires_at.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    @property
    def expired(self) -> bool:
        expiry = self.expiry()
        return expiry is not None and expiry <= datetime.now(UTC)


# What a bearer token may hold: it goes into an HTTP header, which takes visible ASCII only.
TOKEN_RE = re.compile(r"[\x21-\x7e]+")


def usable_token(token: str) -> bool:
    """Whether ``token`` can be sent in the Authorization header (visible ASCII, not empty)."""
    return TOKEN_RE.fullmatch(token) is not None


def load_credentials() -> Credentials | None:
    """The stored sign-in; None when there is none. A config dir that is not this user's own, or that
    another user could swap, is refused (``check_config_dir``): they could have written a sign-in there.
    A file that is no sign-in (not a JSON object, a field missing, a token no HTTP header can carry)
    is refused with exit 3, saying to sign in again."""
    path = credentials_path()
    if path.parent.exists():
        check_config_dir(path.parent)
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CliError(
            f"Cannot read {printable(path)}: {printable(error)}. Run `passport auth login` again.", Exit.AUTH
        ) from error
    if not isinstance(data, dict):
        raise CliError(
            f"{printable(path)} holds no sign-in (not a JSON object): run `passport auth login` again.", Exit.AUTH
        )
    if any(key not in data for key in ("portal", "token", "expires_at")):
        raise CliError(f"{printable(path)} is incomplete: run `passport auth login` again.", Exit.AUTH)
    credentials = Credentials(
        portal=str(data["portal"]),
        token=str(data["token"]),
        expires_at=str(data["expires_at"]),
        username=str(data.get("username", "")),
        insecure_http=data.get("insecure_http") is True,
    )
    if not usable_token(credentials.token):
        raise CliError(
            f"{printable(path)} holds a token that cannot be sent (only visible ASCII characters can): "
            "run `passport auth login` again.",
            Exit.AUTH,
        )
    return credentials


def save_credentials(credentials: Credentials) -> Path:
    path = credentials_path()
    write_private(path, json.dumps(asdict(credentials), indent=2) + "\n")
    return path


def delete_credentials() -> bool:
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True
