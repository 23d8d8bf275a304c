"""`curl -sL <portal>/cli/install.sh | sh -s` for real, against a live portal serving a wheel built
and signed as `manage.py build_cli_wheel` does (the helpers of test_self_update), installing into
a prefix whose path holds spaces.

pip never goes to the network: the script honours pip's own environment (PIP_NO_INDEX,
PIP_NO_DEPS), and the new virtualenvs reach the CLI's dependencies through PYTHONPATH (links to
this environment's copies, never the project itself), so the `passport` the script installs is
the wheel's.

The script is piped to `sudo sh -s` from wherever the person stands, /tmp included, where anyone
may leave files: nothing in that directory may run, neither a Python module beside a `python -m`
or `-c` nor a program reached through a relative or empty PATH entry.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from accounts import cli_signing
from passport_cli import release_keys
from tests.cli.test_self_update import CLI_DEPENDENCIES, _source_tree, _wheel_name

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]

VERSION = "7.11.0"


@pytest.fixture(scope="module")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("install-release-key") / "release.key"
    call_command("build_cli_wheel", generate_signing_key=path)
    return path


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, release_key: Path) -> Path:
    wheel_dir = tmp_path_factory.mktemp("install-cli-wheels")
    public = Path(f"{release_key}.pub").read_text().strip()
    tree = _source_tree(tmp_path_factory.mktemp("install-tree"), VERSION, public)
    call_command("build_cli_wheel", source=tree, output_dir=wheel_dir, signing_key=release_key)
    return wheel_dir


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Links to the CLI's dependencies in this environment, for PYTHONPATH."""
    deps = tmp_path_factory.mktemp("install-deps")
    for module in CLI_DEPENDENCIES:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        origin = Path(spec.origin)
        if spec.submodule_search_locations:
            (deps / module).symlink_to(origin.parent)
        else:
            (deps / origin.name).symlink_to(origin)
    return deps


@pytest.fixture
def portal(live_server: Any, settings: Any, published: Path, release_key: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The live portal, publishing ``published``; its CLI (and so its install script) trusts ``release_key``."""
    settings.PASSPORT_CLI_WHEEL_DIR = published
    settings.PASSPORT_BASE_URL = live_server.url
    settings.PASSPORT_CLI_RELEASE_DOWNLOADS_PER_MINUTE = 1000
    public = Path(f"{release_key}.pub").read_text().strip()
    monkeypatch.setattr(release_keys, "RELEASE_KEYS", (public,))
    return str(live_server.url)


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "with space" / "it's here"
    return {"prefix": root / "passport cli", "bin": root / "bin dir", "home": tmp_path / "home"}


def _install(
    portal: str, places: dict[str, Path], deps: Path, cwd: Path | None = None, **extra: str | None
) -> subprocess.CompletedProcess[str]:
    """Runs the served script as `curl -sL <portal>/cli/install.sh | sh -s` does, from ``cwd`` (the
    home directory by default); ``extra`` sets environment variables, None unsets one."""
    places["home"].mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(places["home"]),
        "PASSPORT_CLI_PREFIX": str(places["prefix"]),
        "PASSPORT_CLI_BIN_DIR": str(places["bin"]),
        "PASSPORT_CLI_PYTHON": sys.executable,
        "PYTHONPATH": str(deps),
        "PIP_NO_INDEX": "1",
        "PIP_NO_DEPS": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        **extra,
    }
    # curl and sh by their full paths: the PATH given to the script may reach into ``cwd``.
    return subprocess.run(
        [_tool("sh"), "-c", '"$2" -sL "$1/cli/install.sh" | "$3" -s', "sh", portal, _tool("curl"), _tool("sh")],
        env={name: value for name, value in env.items() if value is not None},
        cwd=cwd or places["home"], capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found is not None, name
    return found


def _nothing_installed(places: dict[str, Path]) -> bool:
    return not places["prefix"].exists() and not (places["bin"] / "passport").exists()


@pytest.mark.parametrize("verify_with", ["", "openssl", "python"])  # "": openssl 3 when present, else python
def test_install_sh_installs_the_signed_release_into_a_prefix_with_spaces(
    portal: str, places: dict[str, Path], dependencies: Path, release_key: Path, verify_with: str
) -> None:
    result = _install(portal, places, dependencies, PASSPORT_CLI_VERIFY_WITH=verify_with)
    assert result.returncode == 0, result.stderr
    key = cli_signing.signing_key_fingerprint(cli_signing.signing_key_load(path=release_key))
    assert f"the signature by release key {key} verifies" in result.stderr
    assert result.stdout.strip() == f"passport {VERSION}"

    linked = places["bin"] / "passport"
    assert linked.is_symlink() and linked.resolve() == (places["prefix"] / "bin" / "passport").resolve()
    env = {"PATH": os.environ["PATH"], "HOME": str(places["home"]), "PYTHONPATH": str(dependencies)}
    version = subprocess.run([linked, "version"], env=env, capture_output=True, text=True, check=False)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"passport {VERSION}"
    shown = subprocess.run(
        [places["prefix"] / "bin" / "python", "-m", "pip", "show", "passport-portal"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"Version: {VERSION}" in shown.stdout

    # Run again (a reinstall): the same venv and link, still working.
    again = _install(portal, places, dependencies, PASSPORT_CLI_VERIFY_WITH=verify_with)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"passport {VERSION}" and linked.is_symlink()


@pytest.mark.parametrize("verify_with", ["openssl", "python"])
def test_a_signature_that_does_not_match_is_refused_and_nothing_is_installed(
    portal: str, places: dict[str, Path], dependencies: Path, published: Path, release_key: Path,
    settings: Any, tmp_path: Path, verify_with: str,
) -> None:  # fmt: skip
    served = tmp_path / "served"
    served.mkdir()
    for item in published.iterdir():
        (served / item.name).write_bytes(item.read_bytes())
    settings.PASSPORT_CLI_WHEEL_DIR = served
    # The release key's genuine signature, but over another digest than the wheel's.
    wrong = cli_signing.release_sign(
        key=cli_signing.signing_key_load(path=release_key), filename=_wheel_name(VERSION), sha256="0" * 64
    )
    (served / f"{_wheel_name(VERSION)}.sig").write_text(json.dumps(wrong.as_dict()))

    result = _install(portal, places, dependencies, PASSPORT_CLI_VERIFY_WITH=verify_with)
    assert result.returncode == 3, result.stderr
    assert f"the signature on {_wheel_name(VERSION)} does not verify" in result.stderr
    assert "nothing installed" in result.stderr
    assert _nothing_installed(places)


def test_an_untrusted_key_or_no_python_installs_nothing(
    portal: str, places: dict[str, Path], dependencies: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "other.key"
    public = cli_signing.signing_key_public_line(cli_signing.signing_key_generate(path=other))
    monkeypatch.setattr(release_keys, "RELEASE_KEYS", (public,))
    result = _install(portal, places, dependencies)
    assert result.returncode == 3, result.stderr
    assert "which is not a release key" in result.stderr and _nothing_installed(places)

    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\nexit 1\n")
    old.chmod(0o755)
    result = _install(portal, places, dependencies, PASSPORT_CLI_PYTHON=str(old))
    assert result.returncode == 2
    assert "is not Python 3.11 or newer" in result.stderr and _nothing_installed(places)


def test_when_no_check_can_run_it_refuses_unless_told_to_skip(
    portal: str, places: dict[str, Path], dependencies: Path, tmp_path: Path
) -> None:
    # No openssl 3 forced off, no cryptography reachable, and pip may not download it.
    without = tmp_path / "deps-without-cryptography"
    without.mkdir()
    for item in dependencies.iterdir():
        if item.name not in {"cryptography", "_cffi_backend"} and not item.name.startswith("_cffi_backend"):
            (without / item.name).symlink_to(item.resolve())
    refused = _install(portal, places, without, PASSPORT_CLI_VERIFY_WITH="python")
    assert refused.returncode == 3, refused.stderr
    assert "cannot check the signature" in refused.stderr and "PASSPORT_CLI_SKIP_SIGNATURE_CHECK=yes" in refused.stderr
    assert _nothing_installed(places)

    skipped = _install(
        portal, places, without, PASSPORT_CLI_VERIFY_WITH="python", PASSPORT_CLI_SKIP_SIGNATURE_CHECK="yes"
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "WITHOUT checking its signature" in skipped.stderr
    assert skipped.stdout.strip() == f"passport {VERSION}"


def _plant(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


@pytest.mark.parametrize(("verify_with", "download_with"), [("python", "curl"), ("openssl", "urllib")])
def test_install_sh_imports_no_python_module_planted_in_the_working_directory(
    portal: str, places: dict[str, Path], dependencies: Path, tmp_path: Path, verify_with: str, download_with: str
) -> None:
    """`python -m venv`, `-m pip`, the `-c` download and the signature check, run from a shared
    directory holding a venv.py, a pip package, a shutil.py and a cryptography package."""
    shared = tmp_path / "shared-tmp"
    ran = tmp_path / "ran"
    ran.mkdir()
    for module in ("venv.py", "pip/__init__.py", "shutil.py", "cryptography/__init__.py"):
        _plant(shared, module, f"open({str(ran / module.replace('/', '.'))!r}, 'w').close()\n")
    # Without curl (nor wget) the script downloads with Python's urllib (`python -c 'import shutil, ...'`).
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in (
        "cat",
        "id",
        "ln",
        "ls",
        "mkdir",
        "mktemp",
        "openssl",
        "rm",
        *(["curl"] if download_with == "curl" else []),
    ):
        (tools / name).symlink_to(_tool(name))

    result = _install(portal, places, dependencies, cwd=shared, PATH=str(tools), PASSPORT_CLI_VERIFY_WITH=verify_with)
    assert sorted(item.name for item in ran.iterdir()) == []
    assert result.returncode == 0, result.stderr
    assert "the signature by release key" in result.stderr and result.stdout.strip() == f"passport {VERSION}"


@pytest.mark.parametrize("entry", [".", "", "bin"], ids=["dot", "empty", "relative"])
def test_install_sh_runs_no_program_planted_in_the_working_directory_through_a_relative_path_entry(
    portal: str, places: dict[str, Path], dependencies: Path, tmp_path: Path, entry: str
) -> None:
    """python3 (found without PASSPORT_CLI_PYTHON), openssl, mktemp and curl planted where a
    relative PATH entry ("." or "bin") or an empty one (the current directory) finds them first;
    each would log itself, then run the real one."""
    shared = tmp_path / "shared-tmp"
    log = tmp_path / "ran.log"
    real = tmp_path / "real"
    real.mkdir()
    (real / "python3").symlink_to(sys.executable)
    for name in ("python3", "openssl", "mktemp", "curl"):
        target = real / "python3" if name == "python3" else _tool(name)
        _plant(shared / entry, name, f'#!/bin/sh\necho {name} >>"{log}"\nexec "{target}" "$@"\n').chmod(0o755)

    path = f"{entry}:{real}:{os.environ['PATH']}"
    result = _install(portal, places, dependencies, cwd=shared, PATH=path, PASSPORT_CLI_PYTHON=None)
    assert not log.exists(), log.read_text()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"passport {VERSION}"


def test_a_relative_passport_cli_python_is_taken_from_the_callers_directory(
    portal: str, places: dict[str, Path], dependencies: Path
) -> None:
    """The script works in a directory of its own: a relative PASSPORT_CLI_PYTHON still names the
    Python beside the caller, as the caller meant."""
    mine = places["home"] / "py"
    mine.mkdir(parents=True)
    (mine / "python3").symlink_to(sys.executable)
    result = _install(portal, places, dependencies, PASSPORT_CLI_PYTHON="py/python3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"passport {VERSION}"
