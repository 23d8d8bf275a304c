"""The `passport` wheel's runtime dependencies (pyproject.toml's ``dependencies``).

Each is bounded both ways: a lower bound no older than the last release that fixed a credential
leak the CLI could meet, and an upper bound below the next major release of the version the
portal runs and the tests use (requirements/base.txt), so a person's pip never picks a release
nobody has tried, nor an old one with a known hole.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# The oldest release each dependency may be, and why (the projects' changelogs).
OLDEST = {
    # 2.31.0: Proxy-Authorization no longer sent on to the destination of an HTTPS redirect
    # (CVE-2023-32681); 2.32.0: verify=False no longer sticks to a Session's later requests
    # (CVE-2024-35195); 2.32.4: a crafted URL no longer reads another host's .netrc credentials
    # (CVE-2024-47081); 2.33.0: an empty .netrc entry no longer becomes malformed authentication on
    # Python 3.11+, the CLI's lowest.
    "requests": Version("2.33.0"),
    # 16.1: Authorization, Cookie and Proxy-Authorization are stripped when connect() follows a
    # cross-origin redirect (the CLI's proxy WebSocket carries its bearer token in Authorization).
    "websockets": Version("16.1"),
}

_LOWER = {">=", ">", "~=", "=="}
_UPPER = {"<", "<=", "~=", "=="}


def cli_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def portal_pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements" / "base.txt").read_text().splitlines():
        if found := re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip()):
            pins[found[1].lower().replace("_", "-")] = Version(found[2])
    return pins


def lower_bound(specifier: SpecifierSet) -> Version | None:
    bounds = [Version(spec.version) for spec in specifier if spec.operator in _LOWER]
    return max(bounds, default=None)


def upper_bound(specifier: SpecifierSet) -> Version | None:
    bounds: list[Version] = []
    for spec in specifier:
        version = Version(spec.version)
        if spec.operator in ("<", "<=", "=="):
            bounds.append(version)
        elif spec.operator == "~=":  # ~=X.Y means < X+1; ~=X.Y.Z means < X.Y+1
            release = version.release[:-1]
            bounds.append(Version(".".join(map(str, (*release[:-1], release[-1] + 1)))))
    return min(bounds, default=None)


def test_every_cli_dependency_is_bounded_below_and_above() -> None:
    requirements = cli_requirements()
    assert {requirement.name for requirement in requirements} >= {"requests", "websockets"}
    for requirement in requirements:
        operators = {spec.operator for spec in requirement.specifier}
        assert operators & _LOWER, f"{requirement}: no lower bound"
        assert operators & _UPPER, f"{requirement}: no upper bound"
        assert "===" not in operators, f"{requirement}: arbitrary equality is no bound"


def test_the_upper_bounds_stop_below_the_next_major_of_what_the_portal_runs() -> None:
    pins = portal_pins()
    for requirement in cli_requirements():
        pinned = pins.get(requirement.name.lower())
        assert pinned is not None, f"{requirement.name} is not pinned in requirements/base.txt"
        # The version the tests run is one the CLI accepts...
        assert requirement.specifier.contains(pinned), f"{requirement} refuses the tested {pinned}"
        # ...and nothing of a later major release is.
        upper = upper_bound(requirement.specifier)
        assert upper is not None and upper <= Version(f"{pinned.major + 1}"), f"{requirement}: past {pinned.major}.x"


def test_no_lower_bound_lets_in_a_release_before_its_credential_fixes() -> None:
    by_name = {requirement.name.lower(): requirement for requirement in cli_requirements()}
    for name, oldest in OLDEST.items():
        lower = lower_bound(by_name[name].specifier)
        assert lower is not None and lower >= oldest, f"{by_name[name]}: must not allow releases before {oldest}"
