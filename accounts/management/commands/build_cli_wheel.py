"""Build the `passport` CLI's wheel from a source tree and publish it for `passport version --self-update`.

The wheel is built from a copy of only what pyproject.toml packages (so the tree gets no
build/ or egg-info litter), offline (`--no-build-isolation --no-index`), then copied into
PASSPORT_CLI_WHEEL_DIR with its SHA-256 recorded in the manifest the portal serves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from packaging.version import InvalidVersion, Version

from accounts import cli_services

_VERSION_RE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


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


class Command(BaseCommand):
    help = "Build the passport CLI's wheel and publish it (with its SHA-256) for `passport version --self-update`."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--source", type=Path, default=Path(settings.BASE_DIR), help="the source tree")
        parser.add_argument("--output-dir", type=Path, default=None, help="default: PASSPORT_CLI_WHEEL_DIR")

    def handle(self, *args: Any, source: Path, output_dir: Path | None, **options: Any) -> None:
        source = source.resolve()
        packages = _packages(source)
        expected = _cli_version(source)
        with tempfile.TemporaryDirectory(prefix="passport-cli-wheel-") as scratch:
            tree, out = Path(scratch) / "tree", Path(scratch) / "out"
            tree.mkdir()
            shutil.copy2(source / "pyproject.toml", tree / "pyproject.toml")
            for package in packages:
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
            version = cli_services.cli_wheel_version(wheel.name)
            if version != expected:
                # The CLI compares its __version__ with the index: if the two disagreed it would
                # "update" to the same wheel forever.
                raise CommandError(
                    f"pyproject.toml builds version {version}, but passport_cli.__version__ is {expected}: "
                    "make them agree."
                )
            try:
                release = cli_services.cli_release_publish(wheel=wheel, wheel_dir=output_dir)
            except cli_services.CliReleaseError as error:
                raise CommandError(str(error)) from error
        destination = output_dir or cli_services.cli_wheel_dir()
        self.stdout.write(f"Published {release.filename} (sha256 {release.sha256}) in {destination}")
