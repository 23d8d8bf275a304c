"""A portal URL's user info (``user:password@``) is never repeated: not on stderr, not in the report for
support (`passport diagnostics`), whatever form the URL takes (a scheme in capitals, none at all, odd
separators, an at-sign a parser reads as one). What the CLI does show of a URL, control characters and
escape sequences included, is escaped (``display.printable``). No portal: every URL here is refused,
or points at a closed port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from passport_cli.config import Credentials, save_credentials
from passport_cli.errors import Exit
from passport_cli.main import main

SECRET = "hunter2"

# Each holds SECRET where a URL parser, a browser or a person would read a password (or a user name).
URLS_WITH_USER_INFO = [
    "someone:hunter2@portal.example",  # no scheme
    "HTTPS://someone:hunter2@portal.example/",  # a scheme in capitals
    "Http://someone:hunter2@portal.example",
    "https:someone:hunter2@portal.example",  # no slashes
    "https:/someone:hunter2@portal.example",
    "https:///someone:hunter2@portal.example",
    "https:\\\\someone:hunter2@portal.example",  # backslashes, as a browser reads them
    "//someone:hunter2@portal.example",  # scheme-relative
    " https://someone:hunter2@portal.example",  # a space in front
    "ftp://someone:hunter2@portal.example",  # another scheme
    "https://hunter2@portal.example",  # a user name alone is user info too
    "https://someone:hun/ter2@portal.example",  # a slash in the password: urlsplit ends the netloc there
    "https://someone:hunter2@portal.example@evil.example",  # two at-signs
    "https://someone:hunter2\uff20portal.example",  # FULLWIDTH COMMERCIAL AT: NFKC makes it "@"
    "https://someone:hunter2\ufe6bportal.example",  # SMALL COMMERCIAL AT, likewise
    "https://someone:hunter2@[::1",  # urlsplit raises on it
    "https://someone:hunter2@portal.example:port/",  # a port that is not one
    "\x1b]52;c;aGk=\x07https://someone:hunter2@portal.example",  # OSC 52 in front of the scheme
    "https://some\x1b[2Jone:hunter2@portal.example",  # an escape sequence inside the user info
    "https://someone:hunter2\n@portal.example",  # a new line before the at-sign
    "https://someone:hunter2@portal.example/\u202e",  # a bidi override after it
    "https://'; rm -rf ~; echo ':hunter2@portal.example",  # shell metacharacters
]


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "config"
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(directory))
    monkeypatch.delenv("PASSPORT_URL", raising=False)
    return directory


@pytest.mark.parametrize("url", URLS_WITH_USER_INFO)
def test_a_refused_portal_url_is_never_repeated_with_its_user_info(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["auth", "login", "--no-browser", "--portal", url]) == Exit.USAGE

    captured = capsys.readouterr()
    assert SECRET not in captured.err + captured.out
    assert captured.err.startswith("passport: The portal URL ")
    assert "\x1b" not in captured.err and "\u202e" not in captured.err
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize("url", URLS_WITH_USER_INFO)
@pytest.mark.parametrize("given_as", ["environment", "option"])
def test_the_report_for_support_never_holds_a_portal_urls_user_info(
    url: str, given_as: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "diagnostics.json"
    arguments = ["diagnostics", "--output", str(report)]
    if given_as == "environment":
        monkeypatch.setenv("PASSPORT_URL", url)
    else:
        arguments += ["--portal", url]

    assert main(arguments) == Exit.OK

    text = report.read_text()
    assert SECRET not in text
    assert SECRET not in json.loads(text)["checks"]["portal"]
    captured = capsys.readouterr()
    assert SECRET not in captured.err + captured.out
    if given_as == "environment":
        assert "[redacted]@" in json.loads(text)["environment"]["PASSPORT_URL"]


def test_a_stored_sign_in_whose_portal_holds_user_info_is_reported_without_it(tmp_path: Path) -> None:
    """credentials.json edited by hand: the report and the sign-in's own messages leave the user info out."""
    save_credentials(Credentials("http://someone:hunter2@127.0.0.1:9", "token-XYZ", "2000-01-01T00:00:00Z", "alice"))
    report = tmp_path / "diagnostics.json"

    assert main(["diagnostics", "--output", str(report)]) == Exit.OK

    text = report.read_text()
    assert SECRET not in text and "token-XYZ" not in text
    assert json.loads(text)["credentials"]["portal"] == "http://[redacted]@127.0.0.1:9"


def test_auth_status_never_shows_a_stored_portals_user_info(capsys: pytest.CaptureFixture[str]) -> None:
    save_credentials(Credentials("http://someone:hunter2@127.0.0.1:9", "token-XYZ", "2000-01-01T00:00:00Z", "alice"))

    main(["auth", "status"])
    main(["auth", "status", "--json"])

    captured = capsys.readouterr()
    assert SECRET not in captured.err + captured.out
    assert "http://[redacted]@127.0.0.1:9" in captured.err + captured.out


def test_a_scheme_in_capitals_is_read_as_the_same_scheme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PASSPORT_URL", "HTTP://127.0.0.1:9/")
    report = tmp_path / "diagnostics.json"

    assert main(["diagnostics", "--output", str(report)]) == Exit.OK

    checks = json.loads(report.read_text())["checks"]
    assert "portal" not in checks
    assert checks["portal_reachable"] == "cannot reach the portal at http://127.0.0.1:9: connection refused"
    assert "passport: checking http://127.0.0.1:9\n" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://portal.example/\x1b]52;c;aGk=\x07", "https://portal.example/\\x1b]52;c;aGk=\\x07"),
        ("https://portal.example\n\nFAKE: signed in", "https://portal.example\\n\\nFAKE: signed in"),
        ("https://portal.\u202eelpmaxe", "https://portal.\\u202eelpmaxe"),
        ("\x1b[31mhttps://portal.example", "\\x1b[31mhttps://portal.example"),
    ],
)
def test_a_portal_url_with_control_characters_is_refused_and_shown_escaped(
    url: str, shown: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["auth", "login", "--no-browser", "--portal", url]) == Exit.USAGE
    err = capsys.readouterr().err
    assert f"'{shown}'" in err
    assert "\x1b" not in err and "\u202e" not in err and err.count("\n") == 1

    report = tmp_path / "diagnostics.json"
    assert main(["diagnostics", "--portal", url, "--output", str(report)]) == Exit.OK
    assert f"'{shown}'" in json.loads(report.read_text())["checks"]["portal"]
    assert "checking" not in capsys.readouterr().err
