"""The CLI's own logic, without a portal: instance choice, config files, unreachable portal, no Django."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import webbrowser
from pathlib import Path
from typing import Any

import pytest
import requests

from passport_cli import auth_commands, ready_instances, self_update
from passport_cli.client import Portal
from passport_cli.config import Credentials, load_credentials, save_credentials
from passport_cli.errors import CliError, Exit
from passport_cli.main import main

ROOT = Path(__file__).resolve().parents[2]


class FakePortal:
    def __init__(self, requests: list[dict[str, Any]]) -> None:
        self.requests = requests

    def get_all(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return self.requests


def _grant(instance_id: str, name: str, status: str = "ready", platform: str = "linux") -> dict[str, Any]:
    return {"instance_id": instance_id, "name": name, "status": status, "platform": platform}


def test_pick_lists_the_choices_when_it_cannot_ask() -> None:
    portal = FakePortal(
        [
            {"id": 7, "grants": [_grant("i-00000001", "web-1"), _grant("i-00000002", "db-1", status="provisioning")]},
            {"id": 8, "grants": [_grant("i-00000003", "win-1", platform="windows")]},
        ]
    )
    with pytest.raises(CliError) as raised:
        ready_instances.pick(portal, None, None)  # type: ignore[arg-type]
    assert raised.value.code == Exit.USAGE
    assert "1. i-00000001 web-1 [linux] (request 7)" in raised.value.message
    assert "2. i-00000003 win-1 [windows] (request 8)" in raised.value.message
    assert "i-00000002" not in raised.value.message
    assert ready_instances.pick(portal, "win-1", None)[0]["id"] == 8  # type: ignore[arg-type]
    assert ready_instances.pick(portal, None, 7)[1]["instance_id"] == "i-00000001"  # type: ignore[arg-type]
    with pytest.raises(CliError) as missing:
        ready_instances.pick(portal, "db-1", None)  # type: ignore[arg-type]
    assert missing.value.code == Exit.NOT_FOUND


def test_pick_leaves_out_grants_whose_ids_are_not_ids_and_prefers_an_instance_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    portal = FakePortal(
        [
            {"id": 7, "grants": [_grant("i-00000001", "i-00000002"), _grant("../../cli/token/revoke", "web\x1b")]},
            {"id": "8; id", "grants": [_grant("i-00000003", "db-1")]},
            {"id": 9, "grants": [_grant("i-00000002", "db-2")]},
        ]
    )
    found = ready_instances.ready_grants(ready_instances.active_grants(portal))  # type: ignore[arg-type]
    assert [(r["id"], g["instance_id"]) for r, g in found] == [(7, "i-00000001"), (9, "i-00000002")]
    assert "left out: ../../cli/token/revoke of request 7" in capsys.readouterr().err
    # A Name (anyone with ec2:CreateTags writes it) equal to another instance's id does not win.
    assert ready_instances.pick(portal, "i-00000002", None)[1]["instance_id"] == "i-00000002"  # type: ignore[arg-type]


def test_credentials_are_private_and_expiry_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASSPORT_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = save_credentials(Credentials("http://portal", "secret", "2000-01-01T00:00:00Z", "alice"))
    assert path == tmp_path / "passport" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded = load_credentials()
    assert loaded is not None and loaded.expired and loaded.username == "alice"


def test_unreachable_portal_exits_6_and_no_django_is_imported(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-m", "passport_cli", "auth", "login", "--no-browser", "--portal", "http://127.0.0.1:9"],
        env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 6, result.stderr
    # One line in plain words, not urllib3's nested repr (HTTPConnectionPool, Max retries, NewConnectionError).
    assert result.stderr == "passport: cannot reach the portal at http://127.0.0.1:9: connection refused\n"
    probe = (
        "import sys, passport_cli.main, passport_cli.tunnel; print(any(m.startswith('django') for m in sys.modules))"
    )
    imported = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"
    assert (
        subprocess.run([sys.executable, "-m", "passport_cli"], env=env, capture_output=True, check=False).returncode
        == 2
    )


def test_diagnostics_shows_the_clis_settings_and_leaves_out_the_portals_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CLI run on the portal's own host sees the portal's secrets in its environment.
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PASSPORT_URL", "http://someone:hunter2-url@127.0.0.1:9/")
    monkeypatch.setenv("PASSPORT_SECRET_KEY", "django-secret-XYZ")
    monkeypatch.setenv("PASSPORT_CA_ENCRYPTION_KEY", "ca-key-XYZ")
    report = tmp_path / "diagnostics.json"

    assert main(["diagnostics", "--output", str(report)]) == 0

    text = report.read_text()
    environment = json.loads(text)["environment"]
    assert "XYZ" not in text and "hunter2" not in text
    assert (
        environment["PASSPORT_SECRET_KEY"]
        == environment["PASSPORT_CA_ENCRYPTION_KEY"]
        == ("(set; not a CLI setting, left out)")
    )
    assert environment["PASSPORT_URL"] == "http://[redacted]@127.0.0.1:9/"
    assert json.loads(text)["checks"]["portal"] == (
        "The portal URL must not hold a user name or password (user:password@)."
    )
    assert environment["PASSPORT_CONFIG_DIR"] == str(tmp_path / "config")


def test_a_report_written_where_the_person_says_leaves_that_directory_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PASSPORT_URL", "http://127.0.0.1:9/")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)

    assert main(["diagnostics", "--output", str(shared / "report.json")]) == 0

    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "report.json").stat().st_mode) == 0o600


def _portal_answer(status: int, body: dict[str, Any], **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers.update({"Content-Type": "application/json", **headers})
    return response


def test_auth_login_slows_down_as_rfc_8628_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """slow_down (a too-fast poll, or too many polls from this address with Retry-After): the interval
    grows by 5 seconds for this and every later poll, and a Retry-After is waited out."""
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    pending = {"error": "authorization_pending", "error_description": "Waiting for the code to be confirmed."}
    hurried = {"error": "slow_down", "error_description": "Polled faster than every 2 seconds."}
    flooded = {"error": "slow_down", "error_description": "Too many sign-in polls from this address: wait 20 seconds."}
    answers = [
        _portal_answer(200, {"device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": "http://127.0.0.1:9/cli/device/",
                             "interval": 2, "expires_in": 600}),
        _portal_answer(400, pending),
        _portal_answer(400, hurried),
        _portal_answer(400, pending),
        _portal_answer(429, flooded, **{"Retry-After": "20"}),
        _portal_answer(400, pending),
        _portal_answer(200, {"access_token": "t", "token_type": "Bearer", "expires_in": 43200,
                             "expires_at": "2099-01-01T00:00:00Z", "username": "alice"}),
    ]  # fmt: skip
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: answers.pop(0))
    slept: list[float] = []
    monkeypatch.setattr(auth_commands.time, "sleep", slept.append)

    assert main(["auth", "login", "--no-browser", "--portal", "http://127.0.0.1:9"]) == 0
    assert slept == [2, 7, 7, 20, 12]
    assert not answers


def test_auth_login_opens_the_browser_at_the_verification_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --no-browser, the page that confirms the code is opened (Python's webbrowser, the
    system's), at the URL that carries the code; the URL and the code are printed all the same."""
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    complete = "http://127.0.0.1:9/cli/device/?code=ABCD-EFGH"
    answers = [
        _portal_answer(200, {"device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": "http://127.0.0.1:9/cli/device/",
                             "verification_uri_complete": complete, "interval": 2, "expires_in": 600}),
        _portal_answer(200, {"access_token": "t", "token_type": "Bearer", "expires_in": 43200,
                             "expires_at": "2099-01-01T00:00:00Z", "username": "alice"}),
    ]  # fmt: skip
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: answers.pop(0))
    monkeypatch.setattr(auth_commands.time, "sleep", lambda seconds: None)
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *args, **kwargs: opened.append(url) or True)

    assert main(["auth", "login", "--portal", "http://127.0.0.1:9"]) == 0
    assert opened == [complete]
    said = capsys.readouterr()
    assert complete in said.err and "ABCD-EFGH" in said.err and "No browser could be opened" not in said.err
    assert load_credentials() is not None


def test_auth_login_still_fails_on_other_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    answers = [
        _portal_answer(200, {"device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": "http://127.0.0.1:9/cli/device/",
                             "interval": 2, "expires_in": 600}),
        _portal_answer(400, {"error": "expired_token", "error_description": "The code expired: sign in again."}),
    ]  # fmt: skip
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: answers.pop(0))
    monkeypatch.setattr(auth_commands.time, "sleep", lambda seconds: None)
    assert main(["auth", "login", "--no-browser", "--portal", "http://127.0.0.1:9"]) == 3


class _Clock:
    """time.monotonic and time.sleep for the sign-in loop: sleeping moves the clock on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _device_start(portal: str = "http://127.0.0.1:9") -> requests.Response:
    return _portal_answer(200, {"device_code": "dc", "user_code": "ABCD-EFGH", "interval": 2, "expires_in": 600,
                                "verification_uri": f"{portal}/cli/device/"})  # fmt: skip


def _signed_in() -> requests.Response:
    return _portal_answer(200, {"access_token": "t", "token_type": "Bearer", "expires_in": 43200,
                                "expires_at": "2099-01-01T00:00:00Z", "username": "alice"})  # fmt: skip


def _login_against(answers: list[Any], monkeypatch: pytest.MonkeyPatch, *args: str) -> _Clock:
    """Run `passport auth login` against these answers (a Response, or an exception the request raises)."""

    def answer(*request_args: object, **kwargs: object) -> requests.Response:
        next_answer = answers.pop(0) if answers else requests.ConnectionError("the portal is gone")
        if isinstance(next_answer, Exception):
            raise next_answer
        return next_answer

    clock = _Clock()
    monkeypatch.setattr(requests.Session, "request", answer)
    monkeypatch.setattr(auth_commands.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(auth_commands.time, "sleep", clock.sleep)
    return clock


@pytest.mark.parametrize("given_as", ["option", "environment"])
@pytest.mark.parametrize(
    "portal", ["http://passport.corp.example", "HTTP://10.0.0.5:8000/", "http://[2001:db8::1]:8000"]
)
def test_auth_login_refuses_plain_http_to_another_host(
    portal: str, given_as: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The device code, then the bearer token, would cross the network in clear: refused (a usage error)
    before anything is sent, as `version --self-update` refuses such a portal."""
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    asked: list[str] = []
    monkeypatch.setattr(requests.Session, "request", lambda self, method, url, **kwargs: asked.append(url))
    arguments = ["auth", "login", "--no-browser"]
    if given_as == "option":
        arguments += ["--portal", portal]
    else:
        monkeypatch.setenv("PASSPORT_URL", portal)

    assert main(arguments) == Exit.USAGE

    shown = portal.lower().rstrip("/")
    assert capsys.readouterr().err == (
        f"passport: Refusing to sign in over plain HTTP to {shown}: the sign-in code and the token would cross "
        "the network unencrypted. Use the portal's https:// URL, or pass --insecure-http to send them in clear "
        "all the same.\n"
    )
    assert asked == []
    assert load_credentials() is None


def test_auth_login_over_plain_http_to_another_host_when_asked_for_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    base = "http://passport.corp.example"
    answers = [_device_start(base), _signed_in()]
    _login_against(answers, monkeypatch)

    assert main(["auth", "login", "--no-browser", "--insecure-http", "--portal", base]) == Exit.OK

    assert (
        f"passport: signing in over plain HTTP to {base} (--insecure-http): the token is sent unencrypted\n"
        in capsys.readouterr().err
    )
    credentials = load_credentials()
    assert credentials is not None and credentials.portal == base and credentials.insecure_http
    stored = json.loads((tmp_path / "config" / "credentials.json").read_text())
    assert stored["insecure_http"] is True


def _sent_with_a_stored_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portal: str, stored: dict[str, Any]
) -> list[tuple[str, str]]:
    """Store ``stored`` as credentials.json (as a CLI of any release may have written it) for ``portal``;
    every request then sent is recorded, with its Authorization header, and answered with no request."""
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("PASSPORT_URL", raising=False)
    (tmp_path / "config").mkdir(mode=0o700)
    sign_in = {"portal": portal, "token": "secret-token", "expires_at": "2099-01-01T00:00:00Z", "username": "alice"}
    (tmp_path / "config" / "credentials.json").write_text(json.dumps({**sign_in, **stored}))
    (tmp_path / "config" / "credentials.json").chmod(0o600)
    sent: list[tuple[str, str]] = []

    def request(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        sent.append((url, str(self.headers.get("Authorization", ""))))
        return _portal_answer(200, {"results": [], "next": None})

    monkeypatch.setattr(requests.Session, "request", request)
    return sent


@pytest.mark.parametrize("stored", [{}, {"insecure_http": False}], ids=["older-cli", "not-chosen"])
def test_a_stored_sign_in_to_plain_http_elsewhere_not_chosen_is_refused_before_sending(
    stored: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sign-in to an http:// portal on another host that nobody chose with --insecure-http (a CLI of
    before the login refusal stored it): its bearer token is not sent in clear; exit 3, sign in again."""
    base = "http://passport.corp.example"
    sent = _sent_with_a_stored_sign_in(tmp_path, monkeypatch, base, stored)

    assert main(["requests", "list"]) == Exit.AUTH

    assert sent == []
    assert capsys.readouterr().err == (
        f"passport: Refusing to send your token over plain HTTP to {base}: this sign-in was not made with "
        "--insecure-http. Sign in again with the portal's https:// URL (`passport auth login --portal https://...`), "
        "or with `passport auth login --insecure-http` to send it in clear all the same.\n"
    )


def test_a_stored_sign_in_to_plain_http_elsewhere_chosen_at_login_is_used_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = "http://passport.corp.example"
    sent = _sent_with_a_stored_sign_in(tmp_path, monkeypatch, base, {"insecure_http": True})

    assert main(["requests", "list"]) == Exit.OK

    assert sent == [(f"{base}/api/requests/", "Bearer secret-token")]
    assert capsys.readouterr().err == (
        f"passport: sending the token over plain HTTP to {base} (signed in with --insecure-http)\n"
    )


def test_auth_logout_of_a_plain_http_sign_in_elsewhere_not_chosen_sends_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not even to revoke it: the sign-in is deleted here, and the message says where to revoke it."""
    base = "http://passport.corp.example"
    sent = _sent_with_a_stored_sign_in(tmp_path, monkeypatch, base, {})

    assert main(["auth", "logout"]) == Exit.OK

    assert sent == []
    assert load_credentials() is None
    assert capsys.readouterr().err == (
        "passport: the portal did not revoke the token (not sent over plain HTTP); it is deleted here anyway\n"
    )


@pytest.mark.parametrize("base", ["http://localhost:9", "https://passport.corp.example"])
def test_a_stored_sign_in_over_https_or_to_this_machine_is_used_quietly(
    base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = _sent_with_a_stored_sign_in(tmp_path, monkeypatch, base, {})

    assert main(["requests", "list"]) == Exit.OK

    assert sent == [(f"{base}/api/requests/", "Bearer secret-token")]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("portal", ["http://localhost:9", "http://[::1]:9", "https://passport.corp.example"])
def test_auth_login_over_https_or_to_this_machine_needs_no_flag(
    portal: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    answers = [_device_start(portal), _signed_in()]
    _login_against(answers, monkeypatch)

    assert main(["auth", "login", "--no-browser", "--portal", portal]) == Exit.OK
    assert "plain HTTP" not in capsys.readouterr().err


def test_auth_login_keeps_polling_through_a_502_and_a_dropped_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy's 502 while the portal restarts, or a connection that drops, is no answer to the sign-in:
    the CLI polls on until the code is confirmed."""
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    pending = {"error": "authorization_pending", "error_description": "Waiting for the code to be confirmed."}
    answers: list[Any] = [
        _device_start(),
        _portal_answer(502, {"detail": "Bad Gateway"}),
        requests.ConnectionError("connection reset"),
        _portal_answer(400, pending),
        _portal_answer(200, {"access_token": "t", "token_type": "Bearer", "expires_in": 43200,
                             "expires_at": "2099-01-01T00:00:00Z", "username": "alice"}),
    ]  # fmt: skip
    clock = _login_against(answers, monkeypatch)

    assert main(["auth", "login", "--no-browser", "--portal", "http://127.0.0.1:9"]) == 0
    assert not answers
    assert clock.slept == [2, 2, 2]
    credentials = load_credentials()
    assert credentials is not None and credentials.token == "t"


def test_auth_login_replaces_credentials_it_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Cannot read credentials.json: ... Run passport auth login again.` must not send that login round in a loop."""
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "credentials.json").write_text("{half a file")
    answers: list[Any] = [
        _device_start(),
        _portal_answer(200, {"access_token": "t", "token_type": "Bearer", "expires_in": 43200,
                             "expires_at": "2099-01-01T00:00:00Z", "username": "alice"}),
    ]  # fmt: skip
    _login_against(answers, monkeypatch)

    assert main(["auth", "login", "--no-browser", "--portal", "http://127.0.0.1:9"]) == 0
    credentials = load_credentials()
    assert credentials is not None and credentials.token == "t"


@pytest.mark.parametrize(
    ("failure", "code", "said"),
    [
        (requests.ConnectionError("refused"), Exit.UNREACHABLE, "cannot reach the portal"),
        (_portal_answer(503, {"detail": "Service Unavailable"}), Exit.ERROR, "The portal answered 503"),
    ],
)
def test_auth_login_that_never_gets_through_again_keeps_the_failures_exit_code(
    failure: Any, code: Exit, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Polled until --timeout, then the last failure's exit code (6 for an unreachable portal), not 3."""
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    answers: list[Any] = [_device_start(), *[failure] * 100]
    clock = _login_against(answers, monkeypatch)

    assert main(["auth", "login", "--no-browser", "--timeout", "30", "--portal", "http://127.0.0.1:9"]) == code
    assert said in capsys.readouterr().err
    assert 10 <= len(clock.slept) <= 16  # every 2 seconds for 30 seconds
    assert load_credentials() is None


@pytest.mark.parametrize(
    ("latest", "installed"),
    [
        ("0.1.0rc1", "0.1.0"),  # a pre-release of the installed version
        ("0.1.0.dev3", "0.1.0rc1"),
        ("1.0.0rc2", "1.0.0rc10"),  # rc10 is the newer, though not as text
        ("0.1.0", "0.1.0.post1"),
        ("0.1.0", "0.1.0+build.7"),  # a local version sorts after its public one
        ("7.9.0", "7.10.0"),
        ("0.9", "0.10.0rc1"),
    ],
)
def test_self_update_never_takes_the_latest_to_an_older_version(latest: str, installed: str) -> None:
    release = self_update.Release(
        version=latest, filename=f"passport_portal-{latest}-py3-none-any.whl", url="", sha256=""
    )
    with pytest.raises(CliError) as refused:
        self_update.refuse_rollback(release, installed, None)
    assert refused.value.code == Exit.ERROR
    assert refused.value.message == (
        f"The portal's latest version is {latest}, older than this passport {installed}: not going back. "
        f"To install it anyway: passport version --self-update --to-version {latest}"
    )
    # Asked for by name, going back is allowed.
    self_update.refuse_rollback(release, installed, latest)


@pytest.mark.parametrize(
    ("latest", "installed"),
    [("0.1.0", "0.1.0rc1"), ("0.1.0rc2", "0.1.0rc1"), ("7.10.0", "7.9.0"), ("1.0.0.post1", "1.0.0"), ("1.0", "0.9.9")],
)
def test_self_update_takes_the_latest_when_it_is_newer(latest: str, installed: str) -> None:
    release = self_update.Release(
        version=latest, filename=f"passport_portal-{latest}-py3-none-any.whl", url="", sha256=""
    )
    self_update.refuse_rollback(release, installed, None)


@pytest.mark.parametrize(("latest", "installed"), [("0.2.0-final!x", "0.1.0"), ("0.2.0", "unknown (no module)")])
def test_self_update_refuses_versions_it_cannot_compare(latest: str, installed: str) -> None:
    release = self_update.Release(version=latest, filename="passport_portal-0.2.0-py3-none-any.whl", url="", sha256="")
    with pytest.raises(CliError) as refused:
        self_update.refuse_rollback(release, installed, None)
    assert refused.value.code == Exit.ERROR
    assert "cannot be compared" in refused.value.message
    assert f"--to-version {shlex.quote(latest)}" in refused.value.message
    self_update.refuse_rollback(release, installed, latest)


def test_self_update_without_packaging_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "packaging.version", None)
    release = self_update.Release(version="0.2.0", filename="passport_portal-0.2.0-py3-none-any.whl", url="", sha256="")
    with pytest.raises(CliError) as refused:
        self_update.refuse_rollback(release, "0.1.0", None)
    assert "pip install 'packaging>=22'" in refused.value.message


FORGED_LINE = "passport: SHA-256 verified; installing passport 9.9 (was 0.1.0)"


@pytest.mark.parametrize(
    ("base", "url", "said", "shown"),
    [
        # Another scheme: refused before anything is asked. A new line would start a line of the portal's.
        ("https://portal.example", f"ftp://x/\n{FORGED_LINE}", "The index points outside the portal (ftp://x/", "\\n"),
        # On the portal, which cannot be reached (nothing listens on port 9). urljoin drops new lines, but
        # not ESC: cursor up and erase that line, then the portal's words in its place.
        ("http://127.0.0.1:9", f"/w.whl\x1b[1A\x1b[2K{FORGED_LINE}", "cannot download http://127.0.0.1:9/w.whl",
         "\\x1b"),
    ],
)  # fmt: skip
def test_self_update_quotes_the_index_url_escaped(base: str, url: str, said: str, shown: str, tmp_path: Path) -> None:
    """No signature covers an index entry's url: a message quoting it must not end a line there, nor move
    the cursor, to fake the CLI's next line."""
    wheel = "passport_portal-9.9-py3-none-any.whl"
    release = self_update.Release(version="9.9", filename=wheel, url=url, sha256="0" * 64)
    with pytest.raises(CliError) as refused:
        self_update.download(Portal(base), release, tmp_path)
    message = refused.value.message
    assert message.startswith(said), message
    assert message.isprintable(), message
    assert shown in message and FORGED_LINE in message
