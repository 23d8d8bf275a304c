"""The CLI on a machine it shares: what it runs again is its own, and it opens only the portal's pages."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from passport_cli import __version__
from passport_cli.auth_commands import _portal_page
from passport_cli.connect_commands import _self_command
from passport_cli.errors import CliError
from passport_cli.self_update import pip_install


def _decoy(where: Path, package: str, marker: Path) -> None:
    """A package that, if imported, leaves ``marker``: what another user could leave in /tmp."""
    (where / package).mkdir()
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('hijacked')\n"
    (where / package / "__init__.py").write_text(code)
    (where / package / "__main__.py").write_text(code)


def test_the_proxycommand_runs_this_cli_even_from_a_directory_holding_another(tmp_path: Path) -> None:
    # ssh runs the ProxyCommand from wherever ssh was started.
    marker = tmp_path / "marker"
    _decoy(tmp_path, "passport_cli", marker)

    ran = subprocess.run([*_self_command(), "version"], cwd=tmp_path, capture_output=True, text=True, check=False)

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"passport {__version__}"
    assert not marker.exists()


def test_self_update_runs_this_interpreters_pip_not_one_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    _decoy(tmp_path, "pip", marker)
    monkeypatch.chdir(tmp_path)

    with pytest.raises(CliError, match="pip could not install"):
        pip_install(tmp_path / "passport_portal-9.9.9-py3-none-any.whl")  # not there: the real pip says so

    assert not marker.exists()


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/passwd",
        "https://phish.example/cli/device/?code=ABCD",
        "https://portal.example@phish.example/cli/device/",
        "javascript:alert(1)",
        "https://portal.example/cli/device/\n?code=x",
        "x-custom-handler://portal.example/run",
        None,
        ["https://portal.example/cli/device/"],
    ],
)
def test_auth_login_opens_no_page_but_the_portals_own(uri: object) -> None:
    assert _portal_page("https://portal.example", uri) is None


def test_auth_login_opens_the_portals_page_at_the_address_this_cli_uses() -> None:
    # Behind a proxy the portal may name its page http:// or with its own port; the base is what works.
    assert (
        _portal_page("https://portal.example", "http://portal.example:8000/cli/device/?code=ABCD-EFGH")
        == "https://portal.example/cli/device/?code=ABCD-EFGH"
    )
