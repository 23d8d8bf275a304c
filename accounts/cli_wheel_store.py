"""Where published CLI wheels are kept: the "cli_wheels" storage (settings.STORAGES, an S3 bucket
shared by every web process) when it is configured, else a directory on this host
(PASSPORT_CLI_WHEEL_DIR, a single-host install). accounts.cli_releases reads and writes the
manifest, wheels and signatures only through these objects, by plain file name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Protocol

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

STORAGE_ALIAS = "cli_wheels"


class WheelFiles(Protocol):
    def size(self, name: str) -> int | None:
        """The size of a regular file of that name, or None (missing, a directory, a symlink)."""

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when it is missing."""

    def open(self, name: str) -> IO[bytes]: ...

    def write(self, name: str, data: bytes) -> None:
        """Replace the file whole (readers see the old or the new one, never a part)."""

    def delete(self, name: str) -> None: ...

    def where(self) -> str: ...


class DirectoryWheelFiles:
    """A directory on this host: written through a temporary name and ``os.replace``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def size(self, name: str) -> int | None:
        path = self.directory / name
        if path.is_symlink() or not path.is_file():
            return None
        return path.stat().st_size

    def read(self, name: str) -> bytes | None:
        try:
            return (self.directory / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def open(self, name: str) -> IO[bytes]:
        return (self.directory / name).open("rb")

    def write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        staged = self.directory / f".{name}.tmp"
        staged.write_bytes(data)
        os.replace(staged, self.directory / name)

    def delete(self, name: str) -> None:
        (self.directory / name).unlink(missing_ok=True)

    def where(self) -> str:
        return str(self.directory)


class StorageWheelFiles:
    """A Django storage (S3 through django-storages): each file one object, put whole."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def size(self, name: str) -> int | None:
        return self.storage.size(name) if self.storage.exists(name) else None

    def read(self, name: str) -> bytes | None:
        if not self.storage.exists(name):
            return None
        with self.storage.open(name, "rb") as handle:
            return bytes(handle.read())

    def open(self, name: str) -> IO[bytes]:
        handle: IO[bytes] = self.storage.open(name, "rb")
        return handle

    def write(self, name: str, data: bytes) -> None:
        # S3 (file_overwrite, settings) replaces the object under exactly this name; another
        # storage would pick a new name for a taken one.
        if not getattr(self.storage, "file_overwrite", False) and self.storage.exists(name):
            self.storage.delete(name)
        saved = self.storage.save(name, ContentFile(data))
        if saved != name:
            self.storage.delete(saved)
            raise OSError(f"the {STORAGE_ALIAS} storage stored {name} as {saved}")

    def delete(self, name: str) -> None:
        self.storage.delete(name)

    def where(self) -> str:
        bucket = getattr(getattr(self.storage, "bucket", None), "name", "")
        location = str(getattr(self.storage, "location", "") or "")
        return f"s3://{bucket}/{location}" if bucket else f"the {STORAGE_ALIAS} storage"


def wheel_files(directory: Path | None = None) -> WheelFiles:
    """An explicit directory (``build_cli_wheel --output-dir``), else the shared storage when
    configured, else PASSPORT_CLI_WHEEL_DIR."""
    if directory is not None:
        return DirectoryWheelFiles(directory)
    if STORAGE_ALIAS in settings.STORAGES:
        return StorageWheelFiles(storages[STORAGE_ALIAS])
    return DirectoryWheelFiles(Path(settings.PASSPORT_CLI_WHEEL_DIR))
