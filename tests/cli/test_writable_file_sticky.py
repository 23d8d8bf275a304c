"""``check_writable_file`` tells a command, before it asks the portal for anything, whether
``write_private`` will write the file: `passport ssh-config -o` has certificates signed (each on record)
for it. In a sticky directory such as /tmp a file of another user's cannot be replaced by this one,
although new files can be made beside it.

The suite runs as root (whom the sticky bit does not stop): the engineer is www-data, as in
test_config_dir_owner, and the file's owner nobody."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from passport_cli.config import Credentials, check_writable_file, write_private
from tests.cli.test_config_dir_owner import ENGINEER, OTHER, SYSTEM_PYTHON, as_root, cli_copy

# check_writable_file, then (if it let the file pass) write_private, as the engineer.
CHECK_THEN_WRITE = """
import sys
from pathlib import Path
from passport_cli.config import check_writable_file, write_private
from passport_cli.errors import CliError
path = Path(sys.argv[1])
try:
    check_writable_file(path)
except CliError as error:
    sys.exit(f"check: {error.message} (exit {error.code})")
try:
    write_private(path, "Host mine\\n")
except CliError as error:
    sys.exit(f"write: {error.message}")
print("written")
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory under /tmp the engineer can reach, with the CLI's code and the engineer's home in it."""
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="passport-sticky-"))
    directory.chmod(0o755)
    home = directory / "home"
    home.mkdir()
    os.chown(home, ENGINEER, ENGINEER)
    cli_copy(directory)
    yield directory
    shutil.rmtree(directory)


def _sticky(shared: Path, owner: int) -> Path:
    sticky = shared / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    os.chown(sticky, owner, owner)
    return sticky


def _owned_file(path: Path, owner: int) -> Path:
    path.write_text("Host theirs\n")
    os.chown(path, owner, owner)
    return path


def _become_engineer() -> None:
    os.setgroups([])  # none of root's groups kept
    os.setgid(ENGINEER)
    os.setuid(ENGINEER)


def _as_engineer(
    python: str, arguments: list[str], shared: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(shared / "home"), "PYTHONPATH": str(shared / "code")}
    return subprocess.run(
        [python, "-P", *arguments], env={**base, **(env or {})},
        capture_output=True, text=True, cwd="/", timeout=120,
        preexec_fn=_become_engineer,
    )  # fmt: skip


@as_root
def test_another_users_file_in_a_sticky_directory_is_refused_by_the_check(shared: Path) -> None:
    target = _owned_file(_sticky(shared, 0) / "ssh_config", OTHER)

    run = _as_engineer(SYSTEM_PYTHON, ["-c", CHECK_THEN_WRITE, str(target)], shared)

    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.strip() == f"check: cannot write {target}: Operation not permitted (exit 1)"
    assert target.read_text() == "Host theirs\n"
    assert sorted(path.name for path in target.parent.iterdir()) == ["ssh_config"]


@as_root
@pytest.mark.parametrize(
    ("directory_owner", "file_owner"),
    [(0, None), (0, ENGINEER), (ENGINEER, OTHER)],
    ids=["no-file-yet", "the-engineers-file", "the-engineers-sticky-directory"],
)
def test_what_the_sticky_bit_lets_the_engineer_replace_passes_the_check_and_is_written(
    shared: Path, directory_owner: int, file_owner: int | None
) -> None:
    target = _sticky(shared, directory_owner) / "ssh_config"
    if file_owner is not None:
        _owned_file(target, file_owner)

    run = _as_engineer(SYSTEM_PYTHON, ["-c", CHECK_THEN_WRITE, str(target)], shared)

    assert run.returncode == 0, run.stderr
    assert run.stdout == "written\n"
    assert target.read_text() == "Host mine\n"
    assert target.stat().st_uid == ENGINEER


@as_root
def test_root_may_replace_another_users_file_in_a_sticky_directory(shared: Path) -> None:
    target = _owned_file(_sticky(shared, OTHER) / "ssh_config", OTHER)

    check_writable_file(target)
    write_private(target, "Host root\n")

    assert target.read_text() == "Host root\n"


def _with_requests(shared: Path) -> None:
    """requests and what it imports, copied beside the CLI's code for /usr/bin/python3 (the venv may live
    under /root, which www-data cannot enter): all `passport ssh-config` needs before it asks the portal."""
    for module in ("requests", "urllib3", "idna", "certifi", "charset_normalizer"):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        copied = shared / "code" / module
        shutil.copytree(Path(spec.origin).parent, copied, ignore=shutil.ignore_patterns("__pycache__"))
        for path in [copied, *copied.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


@as_root
def test_ssh_config_to_another_users_file_in_a_sticky_directory_stops_before_the_portal(shared: Path) -> None:
    """`passport ssh-config -o` as the engineer, signed in to a portal that nothing answers at: the file
    is refused with write_private's message and exit 1, before the portal would be asked to sign."""
    config = shared / "home" / "passport"
    config.mkdir(mode=0o700)
    signed_in = Credentials(portal="http://127.0.0.1:9", token="t", expires_at="2099-01-01T00:00:00Z")
    (config / "credentials.json").write_text(json.dumps(asdict(signed_in)))
    for path in (config, config / "credentials.json"):
        os.chown(path, ENGINEER, ENGINEER)
    target = _owned_file(_sticky(shared, 0) / "ssh_config", OTHER)
    _with_requests(shared)

    run = _as_engineer(
        SYSTEM_PYTHON, ["-m", "passport_cli", "ssh-config", "-o", str(target)], shared,
        {"PASSPORT_CONFIG_DIR": str(config)},
    )  # fmt: skip

    assert run.stderr == f"passport: cannot write {target}: Operation not permitted\n"
    assert run.returncode == 1
    assert target.read_text() == "Host theirs\n"
