"""The programs the CLI runs (ssh, ssh-keygen) are looked up in PATH's absolute entries only.

shutil.which, and subprocess given a bare name, look in the current directory first on Windows
(Python 3.12 too, unless NoDefaultCurrentDirectoryInExePath is set), and on every OS follow PATH's
relative entries, "." or "bin" or an empty one, from the current directory: `passport connect`
run in a downloaded folder would run the ssh.exe planted there. There is no Windows here: the
lookup is a pure function of PATH, the OS flavour and PATHEXT, and the Windows cases check its
candidates; the POSIX cases plant real programs.
"""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

from passport_cli.client import Portal
from passport_cli.executables import executable_candidates, find_executable
from passport_cli.keys import ensure_key
from passport_cli.main import main
from tests.cli.test_config_dir import WEB, CertifyingPortal

ROOT = Path(__file__).resolve().parents[2]


def plant(directory: Path, name: str, marker: Path) -> Path:
    """A program that only leaves a mark that it ran."""
    directory.mkdir(parents=True, exist_ok=True)
    program = directory / name
    program.write_text(f"#!/bin/sh\necho ran >> '{marker}'\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program


class TestCandidates:
    def test_posix_only_absolute_entries_in_order(self) -> None:
        path = ":.:bin:./tools:/usr/local/bin:/usr/bin/::/usr/local/bin"
        assert executable_candidates("ssh", path=path, windows=False, pathext=None) == [
            "/usr/local/bin/ssh",
            "/usr/bin/ssh",
        ]

    def test_windows_never_the_current_directory_nor_a_relative_or_drive_relative_entry(self) -> None:
        path = ";".join(
            [
                ".",
                "",
                "bin",
                r"\Windows\System32",  # the current drive's root: depends on the current directory
                r"D:tools",  # relative to drive D's current directory
                r"C:\Windows\System32\OpenSSH",
                r'"C:\Program Files\Git\usr\bin"',
                r"\\fileserver\share\tools",
            ]
        )
        assert executable_candidates("ssh", path=path, windows=True, pathext=".COM;.EXE;.BAT;.CMD") == [
            r"C:\Windows\System32\OpenSSH\ssh.COM",
            r"C:\Windows\System32\OpenSSH\ssh.EXE",
            r"C:\Program Files\Git\usr\bin\ssh.COM",
            r"C:\Program Files\Git\usr\bin\ssh.EXE",
            r"\\fileserver\share\tools\ssh.COM",
            r"\\fileserver\share\tools\ssh.EXE",
        ]

    def test_windows_runs_programs_not_scripts_cmd_would_parse(self) -> None:
        # A .bat or .cmd runs under cmd.exe, which parses the arguments (a host name, a command) again.
        assert executable_candidates("ssh", path=r"C:\bin", windows=True, pathext=".BAT;.CMD;.PS1") == []
        assert executable_candidates("ssh", path=r"C:\bin", windows=True, pathext=None) == [
            r"C:\bin\ssh.COM",
            r"C:\bin\ssh.EXE",
        ]
        assert executable_candidates("ssh.exe", path=r"C:\bin", windows=True, pathext=".EXE") == [r"C:\bin\ssh.exe"]

    def test_a_name_with_a_directory_is_refused(self) -> None:
        for name in ("./ssh", "bin/ssh", r"bin\ssh", "/usr/bin/ssh"):
            assert executable_candidates(name, path="/usr/bin", windows=False, pathext=None) == []
            assert executable_candidates(name, path=r"C:\bin", windows=True, pathext=None) == []


def test_a_program_planted_in_the_current_directory_or_a_relative_entry_is_never_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    downloads = tmp_path / "downloads"
    plant(downloads, "ssh", marker)
    plant(downloads, "ssh.exe", marker)
    plant(downloads / "bin", "ssh", marker)
    monkeypatch.chdir(downloads)

    for windows in (False, True):
        relative_only = ";".join([".", "", "bin"]) if windows else ":.:bin:"
        assert find_executable("ssh", path=relative_only, windows=windows, pathext=".EXE") is None

    real = plant(tmp_path / "opt" / "bin", "ssh", marker)
    assert find_executable("ssh", path=f".:bin::{real.parent}", windows=False, pathext=None) == str(real)
    assert not marker.exists()


def test_diagnostics_does_not_run_an_ssh_planted_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    downloads = tmp_path / "downloads"
    plant(downloads, "ssh", marker)
    monkeypatch.chdir(downloads)
    monkeypatch.setenv("PATH", f".:{os.environ['PATH']}")
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PASSPORT_URL", "http://127.0.0.1:9/")
    report = tmp_path / "diagnostics.json"

    assert main(["diagnostics", "--output", str(report)]) == 0

    assert not marker.exists()
    assert "OpenSSH" in json.loads(report.read_text())["ssh"]  # the real one, from /usr/bin


def test_a_key_pair_is_made_by_ssh_keygen_from_path_not_one_planted_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    downloads = tmp_path / "downloads"
    plant(downloads, "ssh-keygen", marker)
    monkeypatch.chdir(downloads)
    monkeypatch.setenv("PATH", f".:{os.environ['PATH']}")
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))

    path, public = ensure_key("ed25519")

    assert not marker.exists()
    assert public.startswith("ssh-ed25519 ") and path.exists()


def test_the_cli_finds_every_program_it_runs_through_the_one_lookup() -> None:
    """No shutil.which, and no subprocess call given a bare program name, anywhere in the CLI."""
    offenders = []
    for source in sorted((ROOT / "passport_cli").glob("*.py")):
        tree = ast.parse(source.read_text(), str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "which":
                offenders.append(f"{source.name}:{node.lineno} which")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr
                in (
                    "run",
                    "Popen",
                    "call",
                    "check_call",
                    "check_output",
                )
            ):
                first = node.args[0] if node.args else None
                if isinstance(first, ast.List) and first.elts and isinstance(first.elts[0], ast.Constant):
                    offenders.append(f"{source.name}:{node.lineno} runs {first.elts[0].value!r} by name")
    assert offenders == []


@pytest.mark.parametrize(
    ("ends", "code"),
    [("kill -TERM $$", 128 + 15), ("kill -KILL $$", 128 + 9), ("exit 3", 3)],
    ids=["sigterm", "sigkill", "exit-3"],
)
def test_connect_exits_as_a_shell_says_how_its_ssh_ended(
    ends: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ssh ended by signal N (a SIGTERM sent to it alone, the OOM killer's SIGKILL) is 128 + N, as in a
    shell and in passport's own exit codes; not Popen's -N, which a process exits with as 256 - N."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(f"#!/bin/sh\n{ends}\n")
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")  # ssh-keygen is the real one
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("PASSPORT_URL", raising=False)
    monkeypatch.setattr(Portal, "signed_in", classmethod(lambda cls, url: CertifyingPortal()))

    assert main(["connect", WEB, "--key-type", "ed25519"]) == code
