"""Windows create scripts read as text (no PowerShell here): one grant's script, its lines, and the
body of one of its PowerShell functions."""

from __future__ import annotations

from datetime import UTC, datetime

from fleet.scripts import render_create

USERNAME = "rs-abcdefgh"
DC_USERNAME = USERNAME + "-wxyz"  # a domain controller's grant user has a name of its own


def windows_create(*, admin_rights: bool = False, domain_controller: bool = False) -> str:
    """The create script of one grant, on a member server or on a domain controller."""
    return render_create(
        platform="windows",
        username=DC_USERNAME if domain_controller else USERNAME,
        expires_at=datetime(2030, 3, 4, 10, 0, tzinfo=UTC),
        grant_uid="0b5e8c1e-6f0a-4c55-9d1e-2a7f3c9b8d41",
        region="eu-west-1",
        domain_controller=domain_controller,
        admin_rights=admin_rights,
    )


def script_lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines()]


def ps_function(script: str, name: str) -> str:
    """The body of the PowerShell function ``name``: from its line to the first closing brace at column 0."""
    start = script.index(f"function {name}(")
    return script[start : script.index("\n}\n", start) + 2]
