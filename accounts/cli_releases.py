"""The `passport` CLI's published wheels: what `passport version --self-update` and the install
scripts download, listed, served and published here.

`manage.py build_cli_wheel` copies each wheel to where wheels are published (the shared
"cli_wheels" storage or PASSPORT_CLI_WHEEL_DIR: accounts.cli_wheel_store) and records its SHA-256
in the manifest (sha256sum's format). Only files the manifest names are published; the CLI refuses
a download whose digest differs from the one listed here. With a release key, the command also
writes the wheel's signature beside it (`<wheel>.sig`, JSON); the portal only serves it: the CLI
checks it against the keys built into it, never against anything served here.

Signing in the CLI (the device flow) is accounts.cli_services; its tokens, accounts.cli_tokens.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from packaging.version import InvalidVersion, Version

from accounts.cli_wheel_store import WheelFiles, wheel_files
from passport_cli.release_signature import ReleaseSignature

CLI_MANIFEST_NAME = "SHA256SUMS"
CLI_SIGNATURE_SUFFIX = ".sig"
_SIGNATURE_MAX_BYTES = 4096
# The distribution the CLI is packaged as (pyproject.toml), pure Python: nothing else is served.
CLI_WHEEL_NAME_RE = re.compile(r"passport_portal-(?P<version>[0-9][0-9A-Za-z.!+]{0,63})-py3-none-any\.whl")
_MANIFEST_LINE_RE = re.compile(r"(?P<sha256>[0-9a-f]{64}) [ *](?P<filename>\S+)")


class CliReleaseError(Exception):
    pass


@dataclass(frozen=True)
class CliRelease:
    version: Version
    filename: str
    sha256: str
    size: int
    signature: ReleaseSignature | None = None


def cli_wheel_version(filename: str) -> Version | None:
    """The version in a wheel file name we serve, or None for anything else (junk, traversal, other projects)."""
    match = CLI_WHEEL_NAME_RE.fullmatch(filename)
    if match is None:
        return None
    try:
        return Version(match["version"])
    except InvalidVersion:
        return None


def cli_wheels_where(wheel_dir: Path | None = None) -> str:
    """Where wheels are published (a directory, or the shared bucket), for messages."""
    return wheel_files(wheel_dir).where()


def _manifest_read(files: WheelFiles) -> dict[str, str]:
    """filename -> SHA-256 of the manifest's well-formed lines (others are ignored)."""
    data = files.read(CLI_MANIFEST_NAME)
    if data is None:
        return {}
    entries: dict[str, str] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        match = _MANIFEST_LINE_RE.fullmatch(line.strip())
        if match and cli_wheel_version(match["filename"]) is not None:
            entries[match["filename"]] = match["sha256"]
    return entries


def _signature_read(files: WheelFiles, filename: str) -> ReleaseSignature | None:
    """The wheel's signature file, when it is a regular, small, well-formed one; else None (unsigned)."""
    name = f"{filename}{CLI_SIGNATURE_SUFFIX}"
    size = files.size(name)
    if size is None or size > _SIGNATURE_MAX_BYTES:
        return None
    try:
        data = files.read(name)
        return None if data is None else ReleaseSignature.from_dict(json.loads(data))
    except (OSError, ValueError):
        return None


def cli_release_list(*, wheel_dir: Path | None = None) -> list[CliRelease]:
    """The published releases, newest version first: a manifest entry whose file is a regular file there.

    Read from the shared "cli_wheels" storage when configured (any web process lists them), else
    from PASSPORT_CLI_WHEEL_DIR (accounts.cli_wheel_store)."""
    files = wheel_files(wheel_dir)
    by_version: dict[Version, CliRelease] = {}
    for filename, sha256 in sorted(_manifest_read(files).items()):
        version = cli_wheel_version(filename)
        if version is None or version in by_version:
            continue
        size = files.size(filename)
        if size is None:
            continue
        by_version[version] = CliRelease(
            version=version, filename=filename, sha256=sha256, size=size, signature=_signature_read(files, filename)
        )
    return [by_version[version] for version in sorted(by_version, reverse=True)]


_index_cache: dict[str, tuple[float, tuple[CliRelease, ...]]] = {}
_index_cache_lock = threading.Lock()


def cli_release_index() -> list[CliRelease]:
    """``cli_release_list`` for the public index, kept PASSPORT_CLI_RELEASE_INDEX_CACHE_SECONDS in this
    process: anyone may ask for it, and each listing reads the manifest and two files per release.

    Per process is enough for a cache (unlike a limit): a release published elsewhere is listed here
    at most that much later; one published by this process at once (``cli_release_publish``)."""
    seconds = settings.PASSPORT_CLI_RELEASE_INDEX_CACHE_SECONDS
    if seconds <= 0:
        return cli_release_list()
    where = wheel_files().where()
    now = time.time()
    with _index_cache_lock:
        cached = _index_cache.get(where)
    if cached is not None and 0 <= now - cached[0] < seconds:
        return list(cached[1])
    releases = cli_release_list()
    with _index_cache_lock:
        _index_cache[where] = (now, tuple(releases))
    return releases


def cli_release_index_forget() -> None:
    with _index_cache_lock:
        _index_cache.clear()


def cli_release_open(*, filename: str, wheel_dir: Path | None = None) -> tuple[CliRelease, IO[bytes]] | None:
    """A published release by its exact file name, opened for reading; None when it is not published."""
    if cli_wheel_version(filename) is None:
        return None
    files = wheel_files(wheel_dir)
    release = next((item for item in cli_release_list(wheel_dir=wheel_dir) if item.filename == filename), None)
    return None if release is None else (release, files.open(release.filename))


def cli_release_publish(
    *, wheel: Path, wheel_dir: Path | None = None, sign: Callable[[str, str], ReleaseSignature] | None = None
) -> CliRelease:
    """Copy a built wheel to where wheels are published and record its SHA-256 (replacing an older
    one of that name).

    ``sign(filename, sha256)`` signs the copy's digest (``cli_signing.release_sign``); without it
    any signature of an earlier wheel of that name is removed, since it could only be wrong.
    """
    version = cli_wheel_version(wheel.name)
    if version is None:
        raise CliReleaseError(f"{wheel.name} is not a passport CLI wheel (passport_portal-VERSION-py3-none-any.whl).")
    files = wheel_files(wheel_dir)
    data = wheel.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    signature = sign(wheel.name, sha256) if sign is not None else None
    signature_name = f"{wheel.name}{CLI_SIGNATURE_SUFFIX}"
    files.delete(signature_name)
    files.write(wheel.name, data)
    if signature is not None:
        files.write(signature_name, (json.dumps(signature.as_dict(), indent=2) + "\n").encode())
    entries = {name: digest for name, digest in _manifest_read(files).items() if files.size(name) is not None}
    entries[wheel.name] = sha256
    files.write(CLI_MANIFEST_NAME, "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items())).encode())
    cli_release_index_forget()
    return CliRelease(version=version, filename=wheel.name, sha256=sha256, size=len(data), signature=signature)
