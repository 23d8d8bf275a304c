"""Files Passport writes to local disk are not readable by the host's other users."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from django.core.files.storage import storages

from terminal.storage import chunk_key, object_put, recording_prefix_new


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_local_recording_chunk_is_the_services_own(settings: Any, tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)  # noqa: S103 -- an existing state directory, as systemd made it before StateDirectoryMode
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    previous = os.umask(0o022)  # the modes must not hang on the process's umask
    try:
        prefix = recording_prefix_new()
        object_put(chunk_key(prefix, 0), b"$ cat /etc/shadow\r\n")
    finally:
        os.umask(previous)

    chunk = root / chunk_key(prefix, 0)
    assert chunk.read_bytes() == b"$ cat /etc/shadow\r\n"
    assert _mode(chunk) == 0o640
    assert _mode(chunk.parent) == 0o750  # recordings/<terminal>
    assert _mode(chunk.parent.parent) == 0o750  # recordings


def test_static_files_keep_public_modes(settings: Any) -> None:
    static = storages["staticfiles"]
    assert getattr(static, "file_permissions_mode", None) == 0o644
    assert getattr(static, "directory_permissions_mode", None) == 0o755
