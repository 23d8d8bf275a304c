"""Build the `passport` CLI's wheel from a source tree and publish it for `passport version --self-update`.

The wheel is built from a copy of only what pyproject.toml packages (so the tree gets no
build/ or egg-info litter), offline (`--no-build-isolation --no-index`), then copied into
PASSPORT_CLI_WHEEL_DIR with its SHA-256 recorded in the manifest the portal serves.

`--signing-key PATH` signs it with the release key (Ed25519; ``accounts.cli_signing``): CLIs
install only wheels signed by a key built into them (``passport_cli/release_keys.py``). Keep the
key off the portal host: build on the release machine with ``--output-dir`` and copy the
directory's wheels, ``.sig`` files and SHA256SUMS into PASSPORT_CLI_WHEEL_DIR.
`--generate-signing-key PATH` makes a new key pair and prints the line for release_keys.py.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from packaging.version import InvalidVersion, Version

from accounts import cli_releases, cli_signing
from passport_cli.release_signature import ReleaseSignature, key_fingerprint

_VERSION_RE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
_PUBLIC_LINE_RE = re.compile(r"ssh-ed25519 [A-Za-z0-9+/=]+")


def _packages(source: Path) -> list[str]:
    try:
        project = tomllib.loads((source / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CommandError(f"Cannot read {source / 'pyproject.toml'}: {error}") from error
    packages = project.get("tool", {}).get("setuptools", {}).get("packages", [])
    if "passport_cli" not in packages:
        raise CommandError(f"{source / 'pyproject.toml'} does not package passport_cli.")
    return [str(name) for name in packages]


def _cli_version(source: Path) -> Version:
    """passport_cli.__version__ of the tree: what the installed CLI will say it is."""
    match = _VERSION_RE.search((source / "passport_cli" / "__init__.py").read_text())
    if match is None:
        raise CommandError("passport_cli/__init__.py has no __version__.")
    try:
        return Version(match.group(1))
    except InvalidVersion as error:
        raise CommandError(f"passport_cli.__version__ {match.group(1)!r} is not a version.") from error


def _sign_with(key: Ed25519PrivateKey, filename: str, sha256: str) -> ReleaseSignature:
    return cli_signing.release_sign(key=key, filename=filename, sha256=sha256)


class Command(BaseCommand):
    help = "Build the passport CLI's wheel and publish it (with its SHA-256) for `passport version --self-update`."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--source", type=Path, default=Path(settings.BASE_DIR), help="the source tree")
        parser.add_argument("--output-dir", type=Path, default=None, help="default: PASSPORT_CLI_WHEEL_DIR")
        parser.add_argument(
            "--signing-key", type=Path, default=None, help="Ed25519 private key (PEM or OpenSSH) to sign the wheel"
        )
        parser.add_argument(
            "--signing-key-passphrase-file", type=Path, default=None, help="the passphrase of an encrypted key"
        )
        parser.add_argument(
            "--generate-signing-key",
            type=Path,
            default=None,
            metavar="PATH",
            help="make a new release key pair (PATH and PATH.pub) and exit, building nothing",
        )

    def handle(
        self,
        *args: Any,
        source: Path,
        output_dir: Path | None,
        signing_key: Path | None,
        signing_key_passphrase_file: Path | None,
        generate_signing_key: Path | None,
        **options: Any,
    ) -> None:
        if generate_signing_key is not None:
            self._generate(generate_signing_key)
            return
        key = self._signing_key(signing_key, signing_key_passphrase_file)
        source = source.resolve()
        packages = _packages(source)
        expected = _cli_version(source)
        if key is not None:
            self._warn_if_not_embedded(key, source)
        with tempfile.TemporaryDirectory(prefix="passport-cli-wheel-") as scratch:
            tree, out = Path(scratch) / "tree", Path(scratch) / "out"
            tree.mkdir()
            shutil.copy2(source / "pyproject.toml", tree / "pyproject.toml")
            for package in packages:
                if "." in package:
                    continue  # a subpackage: copied with its parent
                shutil.copytree(source / package, tree / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            built = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                 "--disable-pip-version-check", "--quiet", "--wheel-dir", str(out), str(tree)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            wheels = sorted(out.glob("*.whl"))
            if built.returncode != 0 or len(wheels) != 1:
                raise CommandError(f"pip wheel failed (exit {built.returncode}):\n{built.stderr[-3000:]}")
            wheel = wheels[0]
            version = cli_releases.cli_wheel_version(wheel.name)
            if version != expected:
                # The CLI compares its __version__ with the index: if the two disagreed it would
                # "update" to the same wheel forever.
                raise CommandError(
                    f"pyproject.toml builds version {version}, but passport_cli.__version__ is {expected}: "
                    "make them agree."
                )
            sign = functools.partial(_sign_with, key) if key is not None else None
            try:
                release = cli_releases.cli_release_publish(wheel=wheel, wheel_dir=output_dir, sign=sign)
            except cli_releases.CliReleaseError as error:
                raise CommandError(str(error)) from error
        destination = cli_releases.cli_wheels_where(output_dir)
        signed = f", signed by {release.signature.key}" if release.signature else ", unsigned: CLIs will refuse it"
        self.stdout.write(f"Published {release.filename} (sha256 {release.sha256}{signed}) in {destination}")

    def _signing_key(self, path: Path | None, passphrase_file: Path | None) -> Ed25519PrivateKey | None:
        if path is None:
            if passphrase_file is not None:
                raise CommandError("--signing-key-passphrase-file goes with --signing-key.")
            return None
        passphrase = None
        if passphrase_file is not None:
            try:
                passphrase = passphrase_file.read_bytes().rstrip(b"\r\n")
            except OSError as error:
                raise CommandError(f"Cannot read {passphrase_file}: {error.strerror or error}") from error
        try:
            return cli_signing.signing_key_load(path=path, passphrase=passphrase)
        except cli_signing.SigningKeyError as error:
            raise CommandError(str(error)) from error

    def _generate(self, path: Path) -> None:
        try:
            key = cli_signing.signing_key_generate(path=path)
        except cli_signing.SigningKeyError as error:
            raise CommandError(str(error)) from error
        line = cli_signing.signing_key_public_line(key)
        self.stdout.write(
            f"Wrote the release key {path} (keep it off the portal) and {path}.pub, "
            f"fingerprint {key_fingerprint(line)}.\n"
            f"Add this line to RELEASE_KEYS in passport_cli/release_keys.py, then build with --signing-key {path}:\n"
            f"    {line!r},"
        )

    def _warn_if_not_embedded(self, key: Ed25519PrivateKey, source: Path) -> None:
        """A CLI built without the key would refuse the next update signed with it: say so now."""
        fingerprint = cli_signing.signing_key_fingerprint(key)
        keys_file = source / "passport_cli" / "release_keys.py"
        try:
            text = keys_file.read_text()
        except OSError:
            text = ""
        embedded = set()
        for match in _PUBLIC_LINE_RE.finditer(text):
            try:
                embedded.add(key_fingerprint(match.group(0)))
            except ValueError:
                continue
        if fingerprint not in embedded:
            self.stderr.write(
                f"Warning: {keys_file} does not list the signing key {fingerprint}: the CLI built here will "
                "refuse later updates signed with it. Add its public line (ssh-keygen -y -f KEY) to RELEASE_KEYS."
            )
