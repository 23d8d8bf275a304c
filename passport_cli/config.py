"""Where the CLI keeps its state: the config dir, the credentials file (mode 0600) and keys."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from passport_cli.errors import CliError, Exit


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
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, created with mode 0600 (never readable in between).

    Its directory is made 0700 if it is the CLI's own (under ``config_dir()``); a directory the
    person named (``-o``) is created if missing, and otherwise left as it is."""
    if path.parent.resolve().is_relative_to(config_dir().resolve()):
        ensure_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        path.chmod(0o600)


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


@dataclass
class Credentials:
    portal: str
    token: str
    expires_at: str  # ISO 8601
    username: str = ""

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


def load_credentials() -> Credentials | None:
    path = credentials_path()
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CliError(f"Cannot read {path}: {error}. Run `passport auth login` again.", Exit.AUTH) from error
    try:
        return Credentials(
            portal=str(data["portal"]),
            token=str(data["token"]),
            expires_at=str(data["expires_at"]),
            username=str(data.get("username", "")),
        )
    except KeyError as error:
        raise CliError(f"{path} is incomplete: run `passport auth login` again.", Exit.AUTH) from error


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
