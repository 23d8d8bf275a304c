"""The production requirement set (requirements/base.txt) is enough for the portal.

devcloud's packages (moto's server and everything it pulls in, requirements/devcloud.txt) are
installed for the demo and the tests only, so no portal module may import one. Each check runs
in a fresh interpreter whose importer refuses those packages, then imports every module of the
portal (Django set up first, as in production).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Not part of the portal: the offline AWS itself, the tests and the benchmarks.
NOT_PORTAL = {"devcloud", "tests", "benchmarks"}

_IMPORT_ALL = r"""
import importlib
import importlib.abc
import sys

blocked = set(sys.argv[1].split(","))
modules = sys.argv[2].split(",")


class RefuseDevcloudPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"{fullname} is only in requirements/devcloud.txt", name=fullname)
        return None


sys.meta_path.insert(0, RefuseDevcloudPackages())
import django

django.setup()
failed = []
for module in modules:
    try:
        importlib.import_module(module)
    except ImportError as error:
        failed.append(f"{module}: {error}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def _distribution_names(requirements: Path) -> set[str]:
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(_normalized(re.split(r"[\[=<>!~ ]", line, maxsplit=1)[0]))
    return names


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def devcloud_only_modules() -> set[str]:
    """Top-level import names that only devcloud.txt's distributions provide."""
    devcloud = _distribution_names(REPO / "requirements" / "devcloud.txt")
    base = _distribution_names(REPO / "requirements" / "base.txt")
    modules = set()
    for module, distributions in packages_distributions().items():
        owners = {_normalized(name) for name in distributions}
        if owners & devcloud and not owners & base and module.isidentifier():
            modules.add(module)
    return modules


def portal_modules() -> list[str]:
    modules = []
    for package in sorted(REPO.iterdir()):
        if package.name in NOT_PORTAL or not (package / "__init__.py").is_file():
            continue
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__main__":
                continue  # running it is the CLI, not an import
            if not (path.parent / "__init__.py").is_file():
                continue  # a script kept beside the code (accounts/install_scripts/), not a module
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def _import_with_devcloud_refused(modules: list[str]) -> subprocess.CompletedProcess[str]:
    blocked = devcloud_only_modules()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "passport_portal.settings"}
    return subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, ",".join(sorted(blocked)), ",".join(modules)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_devcloud_set_is_not_in_the_production_set() -> None:
    blocked = devcloud_only_modules()
    assert {"moto", "flask", "sympy", "docker", "cfnlint"} <= blocked
    base = _distribution_names(REPO / "requirements" / "base.txt")
    assert not base & {"moto", "flask", "cfn-lint", "sympy", "docker", "werkzeug", "waitress"}


def test_every_portal_module_imports_without_devcloud_packages() -> None:
    modules = portal_modules()
    assert {"passport_portal.settings", "passport_cli.main", "ssmchannel.channel"} <= set(modules)
    result = _import_with_devcloud_refused(modules)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_catches_a_module_that_needs_devcloud() -> None:
    # devcloud's server imports moto: the same check must refuse it.
    result = _import_with_devcloud_refused(["devcloud.server"])
    assert result.returncode == 1
    assert "devcloud.server: moto" in result.stdout
