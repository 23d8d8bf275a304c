"""`passport version --self-update` end to end: wheels built by `manage.py build_cli_wheel`, a live
portal serving them, and a throwaway virtualenv whose pip-installed `passport` replaces itself.

pip never goes to the network: the venv reaches the CLI's dependencies (requests, websockets,
cryptography) through a .pth file pointing at links to this environment's copies, and every
install is `--no-deps --no-index`. One venv serves the whole module; each test first installs the
version it starts from.

Release signatures: the wheels are built from copies of the tree whose release_keys.py lists a
key made for this module (never the real release key), and signed with it; the trust of the
CLI under test comes only from the wheel it was installed from, as a user's does.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command

import passport_cli
from accounts import cli_releases, cli_signing
from core.files import file_sha256
from passport_cli.release_signature import ReleaseSignature
from tests.cli.conftest import ROOT, Cli

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]

CURRENT = passport_cli.__version__
OLDER, NEWER = "7.9.0", "7.10.0"  # 7.10 > 7.9 as versions, though not as strings
CLI_DEPENDENCIES = (
    "requests", "urllib3", "idna", "certifi", "charset_normalizer", "websockets", "cryptography", "_cffi_backend",
    "packaging",
)  # fmt: skip


def _wheel_name(version: str) -> str:
    return f"passport_portal-{version}-py3-none-any.whl"


def _source_tree(directory: Path, version: str, release_key: str) -> Path:
    """A copy of what the wheel is built from, with both version numbers set to ``version``,
    trusting ``release_key`` (an OpenSSH public line) for its own later updates."""
    tree = directory / f"tree-{version}"
    tree.mkdir()
    pyproject = (ROOT / "pyproject.toml").read_text()
    (tree / "pyproject.toml").write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject, count=1))
    for package in ("passport_cli", "ssmchannel"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    init = tree / "passport_cli" / "__init__.py"
    init.write_text(re.sub(r'(?m)^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text(), count=1))
    keys = tree / "passport_cli" / "release_keys.py"
    trusted = f"RELEASE_KEYS: tuple[str, ...] = ({release_key!r},)"
    keys.write_text(re.sub(r"(?m)^RELEASE_KEYS: .*$", lambda _: trusted, keys.read_text(), count=1))
    return tree


@pytest.fixture(scope="module")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's release key, made as an operator would (--generate-signing-key)."""
    path = tmp_path_factory.mktemp("release-key") / "release.key"
    call_command("build_cli_wheel", generate_signing_key=path)
    return path


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, release_key: Path) -> Path:
    """Three signed releases built from copies of the current tree: its own version and two others."""
    scratch = tmp_path_factory.mktemp("release-trees")
    wheel_dir = tmp_path_factory.mktemp("cli-wheels")
    public = Path(f"{release_key}.pub").read_text().strip()
    for version in (CURRENT, OLDER, NEWER):
        call_command(
            "build_cli_wheel",
            source=_source_tree(scratch, version, public),
            output_dir=wheel_dir,
            signing_key=release_key,
        )
    return wheel_dir


class Venv:
    """A throwaway virtualenv with the CLI pip-installed in it, as a user would have it."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home

    def pip_install(self, wheel: Path) -> None:
        subprocess.run(
            [self.root / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall",
             "--disable-pip-version-check", "--quiet", str(wheel)],
            check=True, capture_output=True, text=True, cwd=self.home,
        )  # fmt: skip

    def passport(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PASSPORT_", "PYTHON"))}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "config"), VIRTUAL_ENV=str(self.root))
        return subprocess.run(
            [self.root / "bin" / "passport", *args],
            env=env, cwd=self.home, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip

    def version(self) -> str:
        result = self.passport("version")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def installed_metadata_version(self) -> str:
        shown = subprocess.run(
            [self.root / "bin" / "python", "-m", "pip", "show", "passport-portal"],
            capture_output=True, text=True, check=True, cwd=self.home,
        )  # fmt: skip
        return next(line.split(":", 1)[1].strip() for line in shown.stdout.splitlines() if line.startswith("Version:"))


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, published: Path) -> Iterator[Venv]:
    base = tmp_path_factory.mktemp("selfupdate-venv")
    root, deps, home = base / "venv", base / "deps", base / "home"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True)
    deps.mkdir()
    home.mkdir()
    for module in CLI_DEPENDENCIES:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        origin = Path(spec.origin)
        if spec.submodule_search_locations:  # a package: link its directory
            (deps / module).symlink_to(origin.parent)
        else:  # an extension module (cryptography's _cffi_backend): link the file itself
            (deps / origin.name).symlink_to(origin)
    site_packages = next(root.glob("lib/python3*/site-packages"))
    (site_packages / "passport-test-dependencies.pth").write_text(f"{deps}\n")
    yield Venv(root, home)


@pytest.fixture
def portal(live_server: Any, settings: Any, published: Path) -> str:
    settings.PASSPORT_CLI_WHEEL_DIR = published
    return str(live_server.url)


def test_self_update_to_the_latest_then_down_to_a_chosen_version(venv: Venv, published: Path, portal: str) -> None:
    venv.pip_install(published / _wheel_name(CURRENT))
    assert venv.version() == f"passport {CURRENT}"

    latest = venv.passport("version", "--self-update", "--portal", portal, "--json")
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout) == {
        "updated": True,
        "previous": CURRENT,
        "version": NEWER,
        "wheel": _wheel_name(NEWER),
        "sha256": file_sha256(published / _wheel_name(NEWER)),
        "signed_by": cli_releases.cli_release_list(wheel_dir=published)[0].signature.key,  # type: ignore[union-attr]
    }
    assert "signature by release key SHA256:" in latest.stderr and "SHA-256 verified" in latest.stderr
    assert venv.version() == f"passport {NEWER}"
    assert venv.installed_metadata_version() == NEWER

    down = venv.passport("version", "--self-update", "--to-version", OLDER, "--portal", portal)
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == f"passport {NEWER} -> {OLDER}"
    assert venv.version() == f"passport {OLDER}"

    again = venv.passport("version", "--self-update", "--to-version", f"v{OLDER}", "--portal", portal)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"passport {OLDER} is already installed."

    unknown = venv.passport("version", "--self-update", "--to-version", "8.0.0", "--portal", portal)
    assert unknown.returncode == 4
    assert "8.0.0 is not published" in unknown.stderr and NEWER in unknown.stderr
    assert venv.version() == f"passport {OLDER}"


def test_a_tampered_wheel_is_refused_and_nothing_is_installed(
    venv: Venv, published: Path, tmp_path: Path, settings: Any, live_server: Any
) -> None:
    venv.pip_install(published / _wheel_name(CURRENT))
    tampered = tmp_path / "tampered"
    shutil.copytree(published, tampered)
    settings.PASSPORT_CLI_WHEEL_DIR = tampered

    # The file changed after the manifest was written (still a zip pip would accept).
    with (tampered / _wheel_name(NEWER)).open("ab") as wheel:
        wheel.write(b"\0not what was published")
    changed = venv.passport("version", "--self-update", "--portal", live_server.url)
    assert changed.returncode == 1
    assert f"Refusing to install {_wheel_name(NEWER)}" in changed.stderr and "Nothing was installed" in changed.stderr
    assert venv.version() == f"passport {CURRENT}"

    # The manifest's digest is wrong for an intact file: it is not the digest the release key signed.
    manifest = tampered / cli_releases.CLI_MANIFEST_NAME
    good = file_sha256(tampered / _wheel_name(OLDER))
    manifest.write_text(manifest.read_text().replace(good, "0" * 64))
    wrong = venv.passport("version", "--self-update", "--to-version", OLDER, "--portal", live_server.url, "--json")
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert f"the signature on {_wheel_name(OLDER)} does not verify" in wrong.stderr
    assert venv.version() == f"passport {CURRENT}"

    # A portal in other hands serves its own code under the manifest's digest of it: the signature says no.
    changed_digest = file_sha256(tampered / _wheel_name(NEWER))
    manifest.write_text(manifest.read_text().replace(file_sha256(published / _wheel_name(NEWER)), changed_digest))
    served = venv.passport("version", "--self-update", "--portal", live_server.url)
    assert served.returncode == 1
    assert f"the signature on {_wheel_name(NEWER)} does not verify" in served.stderr
    assert "Nothing was installed" in served.stderr
    assert venv.version() == f"passport {CURRENT}"
    assert venv.installed_metadata_version() == CURRENT


def _signature_file(wheel_dir: Path, version: str) -> Path:
    return wheel_dir / f"{_wheel_name(version)}{cli_releases.CLI_SIGNATURE_SUFFIX}"


def _sign_as(wheel_dir: Path, version: str, key: Ed25519PrivateKey, *, claim: str | None = None) -> None:
    """Sign the published wheel's real digest with ``key``, naming ``claim`` as the key if given."""
    name = _wheel_name(version)
    signature = cli_signing.release_sign(key=key, filename=name, sha256=file_sha256(wheel_dir / name))
    if claim is not None:
        signature = ReleaseSignature(key=claim, signature=signature.signature)
    _signature_file(wheel_dir, version).write_text(json.dumps(signature.as_dict()))


def test_unsigned_foreign_and_misplaced_signatures_are_refused(
    venv: Venv, published: Path, tmp_path: Path, settings: Any, live_server: Any
) -> None:
    venv.pip_install(published / _wheel_name(CURRENT))
    served = tmp_path / "served"
    shutil.copytree(published, served)
    settings.PASSPORT_CLI_WHEEL_DIR = served
    trusted = cli_releases.cli_release_list(wheel_dir=published)[0].signature
    assert trusted is not None

    def update() -> subprocess.CompletedProcess[str]:
        result = venv.passport("version", "--self-update", "--portal", live_server.url)
        assert result.returncode == 1, result.stderr
        assert f"Refusing to install {_wheel_name(NEWER)}" in result.stderr and "Nothing was installed" in result.stderr
        assert venv.version() == f"passport {CURRENT}"
        return result

    # No signature at all.
    _signature_file(served, NEWER).unlink()
    assert "the portal gives no release signature" in update().stderr
    # Signed, but by a key this CLI was not built with (the portal's own, say).
    _sign_as(served, NEWER, Ed25519PrivateKey.generate())
    assert f"which this passport does not trust (it trusts {trusted.key})" in update().stderr
    # Another key's signature that names the trusted key.
    _sign_as(served, NEWER, Ed25519PrivateKey.generate(), claim=trusted.key)
    assert "does not verify" in update().stderr
    # The genuine signature of another version, put beside this one.
    shutil.copyfile(_signature_file(served, OLDER), _signature_file(served, NEWER))
    assert f"the signature on {_wheel_name(NEWER)} does not verify" in update().stderr
    # A signature file that is not one: unsigned.
    _signature_file(served, NEWER).write_text(
        json.dumps({**trusted.as_dict(), "signature": base64.b64encode(b"x").decode()})
    )
    assert "no release signature" in update().stderr
    assert venv.installed_metadata_version() == CURRENT


def test_the_latest_version_never_means_an_older_one(
    venv: Venv, published: Path, tmp_path: Path, settings: Any, live_server: Any
) -> None:
    """A portal that stops listing the newest release cannot roll users back to an older signed one."""
    venv.pip_install(published / _wheel_name(NEWER))
    served = tmp_path / "served"
    shutil.copytree(published, served)
    (served / _wheel_name(NEWER)).unlink()
    settings.PASSPORT_CLI_WHEEL_DIR = served
    back = venv.passport("version", "--self-update", "--portal", live_server.url)
    assert back.returncode == 1
    assert f"latest version is {OLDER}, older than this passport {NEWER}: not going back" in back.stderr
    assert venv.version() == f"passport {NEWER}"


def test_the_latest_pre_release_of_the_installed_version_is_older(
    venv: Venv, published: Path, release_key: Path, tmp_path: Path, settings: Any, live_server: Any
) -> None:
    """PEP 440 order: 0.1.0rc1 comes before 0.1.0, so a portal listing only it cannot roll 0.1.0 back."""
    pre_release = f"{CURRENT}rc1"
    served = tmp_path / "served"
    public = Path(f"{release_key}.pub").read_text().strip()
    call_command(
        "build_cli_wheel",
        source=_source_tree(tmp_path, pre_release, public),
        output_dir=served,
        signing_key=release_key,
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    settings.PASSPORT_CLI_WHEEL_DIR = served
    venv.pip_install(published / _wheel_name(CURRENT))
    back = venv.passport("version", "--self-update", "--portal", live_server.url)
    assert back.returncode == 1, back.stderr
    assert f"latest version is {pre_release}, older than this passport {CURRENT}: not going back" in back.stderr
    assert venv.version() == f"passport {CURRENT}"
    # The wheel itself is fine: asked for by name, it is installed.
    chosen = venv.passport("version", "--self-update", "--to-version", pre_release, "--portal", live_server.url)
    assert chosen.returncode == 0, chosen.stderr
    assert venv.version() == f"passport {pre_release}"


def test_self_update_refuses_an_editable_install_and_insecure_portals(
    cli: Cli, portal: str, published: Path, tmp_path: Path, settings: Any
) -> None:
    # The test environment's own passport is `pip install -e .` of this checkout: never replaced.
    # (Served with a wrong digest as well, so that even a broken check cannot install over it.)
    guarded = tmp_path / "guarded"
    shutil.copytree(published, guarded)
    manifest = guarded / cli_releases.CLI_MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace(file_sha256(guarded / _wheel_name(NEWER)), "f" * 64))
    settings.PASSPORT_CLI_WHEEL_DIR = guarded
    editable = cli.run("version", "--self-update", "--to-version", NEWER, "--portal", portal)
    assert editable.returncode == 1
    assert "editable install" in editable.stderr
    assert cli.run("version", check=True).stdout.strip() == f"passport {CURRENT}"

    already = cli.run("version", "--self-update", "--to-version", CURRENT, "--portal", portal, check=True)
    assert already.stdout.strip() == f"passport {CURRENT} is already installed."

    insecure = cli.run("version", "--self-update", "--portal", "http://portal.example.com")
    assert insecure.returncode == 2 and "plain HTTP" in insecure.stderr
    assert cli.run("version", "--to-version", NEWER).returncode == 2
