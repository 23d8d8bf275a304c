"""Where the CLI keeps its sign-in, and that the `passport proxy` ssh runs (from wherever ssh runs, with
whatever environment it has) reads that same sign-in: a relative directory is never taken as it is."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from passport_cli import connect_commands
from passport_cli.client import Portal
from passport_cli.config import Credentials, config_dir, save_credentials
from passport_cli.main import main

# The CLI of this tree, for the `passport proxy` that ssh starts (-P: not from ssh's working directory).
ROOT = Path(__file__).resolve().parents[2]
WEB = "i-0123456789abcdef0"
PINNED, DECOY = "http://127.0.0.1:9", "http://127.0.0.1:8"
# ssh_config and sh syntax a directory name may hold: spaces, quotes, `%` tokens, `$`, `;`, backquotes.
ODD_NAME = "cfg dir 'q' %h %% $HOME;`id` #x"

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH's ssh is not installed")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("PASSPORT_CONFIG_DIR", "XDG_CONFIG_HOME", "PASSPORT_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_a_relative_xdg_config_home_is_ignored(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The XDG spec: a relative path in XDG_CONFIG_HOME is invalid and to be ignored.
    for relative in ("cfg", "./cfg", "~/cfg", ""):
        monkeypatch.setenv("XDG_CONFIG_HOME", relative)
        assert config_dir() == home / ".config" / "passport"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    assert config_dir() == home / "xdg" / "passport"


def test_a_relative_passport_config_dir_is_where_passport_was_started(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", "rel/passport")
    assert config_dir() == tmp_path / "rel" / "passport"
    assert config_dir().is_absolute()


class CertifyingPortal:
    """One ready Linux grant, and certificates for it (a direct account: no host CA to pin)."""

    def get_all(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        grant = {"instance_id": WEB, "name": "web-1", "status": "ready", "platform": "linux"}
        return [{"id": 7, "grants": [grant]}]

    def post_object(self, path: str, json: Any = None) -> dict[str, Any]:
        certificate = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t passport"
        return {"username": "rs-abcdefgh", "certificates": [certificate], "sessions": "direct"}


def _ssh_command(command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The ssh command line `connect` runs, or `ssh -F FILE HOST` for the file `ssh-config` writes."""
    monkeypatch.setattr(Portal, "signed_in", classmethod(lambda cls, url: CertifyingPortal()))
    if command == "ssh-config":
        written = tmp_path / "ssh_config"
        assert main(["ssh-config", "--key-type", "ed25519", "-o", str(written)]) == 0
        return ["ssh", "-F", str(written), WEB]
    ran: list[list[str]] = []
    monkeypatch.setattr(connect_commands, "_run_ssh", lambda argv, env: ran.append(argv) or 0)
    assert main(["connect", WEB, "--key-type", "ed25519"]) == 0
    return ran[0]


@needs_ssh
@pytest.mark.parametrize("command", ["connect", "ssh-config"])
def test_ssh_runs_the_proxy_with_the_config_dir_passport_used(
    command: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set up in one directory with a relative PASSPORT_CONFIG_DIR; ssh run later from another, where the
    # same relative name holds someone else's sign-in (a shared /tmp, a checkout).
    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    for directory in (started, elsewhere):
        directory.mkdir()
    monkeypatch.chdir(started)
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", ODD_NAME)
    save_credentials(Credentials(portal=PINNED, token="mine", expires_at="2099-01-01T00:00:00Z"))
    argv = _ssh_command(command, monkeypatch, tmp_path)
    monkeypatch.chdir(elsewhere)
    save_credentials(Credentials(portal=DECOY, token="theirs", expires_at="2099-01-01T00:00:00Z"))

    ssh = subprocess.run(
        [argv[0], "-oBatchMode=yes", "-oConnectTimeout=20", *argv[1:], "true"],
        cwd=elsewhere, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip

    assert ssh.returncode == 255
    # The proxy signed in as configured, and so tried the (closed) port of the portal passport was set up for.
    assert f"passport: cannot reach the portal's SSH proxy at {PINNED}" in ssh.stderr, ssh.stderr
    assert DECOY not in ssh.stderr


def test_the_default_config_dir_is_not_written_into_the_proxy_command(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_credentials(Credentials(portal=PINNED, token="mine", expires_at="2099-01-01T00:00:00Z"))
    argv = _ssh_command("ssh-config", monkeypatch, tmp_path)
    proxy = next(line for line in Path(argv[2]).read_text().splitlines() if "ProxyCommand" in line)
    assert proxy.endswith(f" proxy 7 {WEB}")


@pytest.mark.parametrize("bad", ["cfg\nProxyCommand touch /tmp/x", "cfg\rx", "cfg\x1b[2Jx", 'cfg"x', "cfg\\x"])
def test_a_config_dir_ssh_config_cannot_hold_is_refused(
    bad: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", bad)
    save_credentials(Credentials(portal=PINNED, token="mine", expires_at="2099-01-01T00:00:00Z"))
    monkeypatch.setattr(Portal, "signed_in", classmethod(lambda cls, url: CertifyingPortal()))

    assert main(["ssh-config", "--key-type", "ed25519", "-o", str(tmp_path / "ssh_config")]) == 1

    assert "cannot be written in an ssh config" in capsys.readouterr().err
    assert not (tmp_path / "ssh_config").exists()
