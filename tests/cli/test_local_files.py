"""The files the CLI writes (credentials, keys, known_hosts, ssh_config, reports): one that cannot be
written is a message and exit 1, never a traceback, and two CLIs writing at once do not trip each other.

The tests run as root, whom no mode bits stop: a directory where a file should be, and paths under
/proc and /sys, are what cannot be written here."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from audit.models import LogbookEntry
from passport_cli import auth_commands
from passport_cli.config import locked, write_private
from passport_cli.errors import CliError
from passport_cli.known_hosts import known_hosts_path, pin_host_cas
from passport_cli.main import main
from sshca.models import IssuedCertificate
from tests.cli.conftest import ROOT, Cli
from tests.cli.helpers import active_grant

# One `passport` process rewriting CONFIG_DIR/known_hosts over and over: what two `passport connect`
# in two terminals do (pin_host_cas), and for one instance its certificate files too.
REWRITER = """
import sys
from pathlib import Path
from passport_cli.config import locked, write_private
from passport_cli.errors import CliError
from passport_cli.known_hosts import known_hosts_path, pin_host_cas
target, failures = Path(sys.argv[1]) / "known_hosts", []
for i in range(200):
    try:
        write_private(target, f"line {i}\\n" * 50)
    except (OSError, CliError) as error:
        failures.append(repr(error))
print(len(failures), failures[-1:])
"""


@pytest.mark.parametrize("where", ["a-directory", "/proc/version/x"])
def test_a_file_that_cannot_be_written_is_a_cli_error_that_names_it(where: str, tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    target = tmp_path / where
    with pytest.raises(CliError) as raised:
        write_private(target, "text\n")
    assert raised.value.message.startswith(f"cannot write {target}: ")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-directory"]  # no temporary file left


def test_two_clis_rewriting_the_same_file_at_once_both_succeed(tmp_path: Path) -> None:
    processes = [
        subprocess.Popen([sys.executable, "-c", REWRITER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert all(output.startswith("0 ") for output in outputs), outputs
    assert [path.name for path in tmp_path.iterdir()] == ["known_hosts"]  # no temporary file left
    assert (tmp_path / "known_hosts").read_text().count("\n") == 50


def test_pinning_the_host_ca_waits_for_another_clis_rewrite_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path))
    path = known_hosts_path()
    pinned = threading.Event()

    def pin() -> None:
        pin_host_cas(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"], ["i-0123456789abcdef0"])
        pinned.set()

    with locked(path):  # another `passport connect` in the middle of its rewrite
        thread = threading.Thread(target=pin)
        thread.start()
        assert not pinned.wait(0.5)
        write_private(path, "i-0fedcba9876543210 ssh-ed25519 AAAAlearned\n")
    thread.join(10)
    assert pinned.is_set()
    assert path.read_text().splitlines() == [
        "i-0fedcba9876543210 ssh-ed25519 AAAAlearned",
        "@cert-authority i-* ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample",
    ]


def test_any_other_file_system_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def cannot_read(args: object) -> int:
        raise PermissionError(13, "Permission denied", "/somewhere/credentials.json")

    monkeypatch.setattr(auth_commands, "cmd_auth_status", cannot_read)
    assert main(["auth", "status"]) == 1
    err = capsys.readouterr().err
    assert err == "passport: /somewhere/credentials.json: Permission denied\n", err


@pytest.mark.usefixtures("live_db")
@pytest.mark.parametrize("output", ["a-directory", "/proc/version/x"])
def test_ssh_config_to_a_path_that_cannot_be_written_is_exit_1_not_a_traceback(
    output: str, cli: Cli, tmp_path: Path
) -> None:
    active_grant(cli, "record")
    (tmp_path / "a-directory").mkdir()
    target = tmp_path / output
    result = cli.run("ssh-config", "-o", str(target))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"passport: cannot write {target}: " in result.stderr


@pytest.mark.usefixtures("live_db")
@pytest.mark.parametrize("output", ["a-directory", "/proc/version/x", "/proc/passport/ssh_config"])
def test_ssh_config_to_a_path_that_cannot_be_written_has_no_certificate_issued(
    output: str, cli: Cli, tmp_path: Path
) -> None:
    """Found out before the portal is asked: a certificate signed (and on record in the Logbook) for a
    file that cannot be written would serve nobody."""
    active_grant(cli, "direct")
    (tmp_path / "a-directory").mkdir()
    target = tmp_path / output

    result = cli.run("ssh-config", "-o", str(target))

    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"passport: cannot write {target}: "), result.stderr
    assert "certificate for" not in result.stderr
    assert not IssuedCertificate.objects.exists()
    assert not LogbookEntry.objects.filter(action="certificate.issued").exists()
    assert not (cli.config_dir / "certs").exists()
