"""The `passport proxy` that ssh runs goes to the portal the command was given: `connect --portal URL` and
`ssh-config --portal URL` both put it in the ProxyCommand, so ssh does not pick PASSPORT_URL (or the
sign-in's portal) from its environment instead."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from passport_cli import connect_commands
from passport_cli.client import Portal
from passport_cli.main import main
from tests.cli.test_config_dir import WEB, CertifyingPortal, home  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("home")

CHOSEN, OTHER = "https://b.example", "https://a.example"


def _proxy_words(text: str) -> list[str]:
    [line] = [line for line in text.splitlines() if line.strip().startswith("ProxyCommand ")]
    return shlex.split(line.strip().removeprefix("ProxyCommand ").replace("%%", "%"))


def test_connect_passes_its_portal_to_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSPORT_URL", OTHER)
    monkeypatch.setattr(Portal, "signed_in", classmethod(lambda cls, url: CertifyingPortal()))
    ran: list[list[str]] = []
    monkeypatch.setattr(connect_commands, "_run_ssh", lambda argv, env: ran.append(argv) or 0)
    assert main(["connect", WEB, "--key-type", "ed25519", "--portal", CHOSEN]) == 0
    [proxy] = [arg for arg in ran[0] if arg.startswith("-oProxyCommand=")]
    assert shlex.split(proxy.removeprefix("-oProxyCommand="))[-2:] == ["--portal", CHOSEN]


def test_ssh_config_passes_its_portal_to_the_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSPORT_URL", OTHER)
    monkeypatch.setattr(Portal, "signed_in", classmethod(lambda cls, url: CertifyingPortal()))
    written = tmp_path / "ssh_config"
    assert main(["ssh-config", "--key-type", "ed25519", "--portal", CHOSEN, "-o", str(written)]) == 0
    words = _proxy_words(written.read_text())
    # ssh runs `passport proxy` with PASSPORT_URL=https://a.example in its environment: without --portal the
    # proxy goes to (or refuses as not signed in to) a portal other than the one ssh-config was asked for.
    assert "--portal" in words and words[words.index("--portal") + 1] == CHOSEN, words
