"""A portal (or whatever answers for it) sets the pace of the CLI's waits and page walks only within bounds:
the sign-in poll's interval, Retry-After and code lifetime are clamped, and a list's ``next`` links are
followed on the portal's own host, each once, for at most ``client.MAX_PAGES`` pages. Whatever it answers, the
command ends, with a message that says why.

The portal here is ``requests.Session.request`` answering as a hostile one would; the clock is a fake one
that sleeping moves on, so a wait of a year takes no time and shows in ``slept``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from passport_cli import auth_commands, client
from passport_cli.client import Portal
from passport_cli.config import Credentials, save_credentials
from passport_cli.errors import CliError, Exit
from passport_cli.main import main

BASE = "http://127.0.0.1:9"
PENDING = {"error": "authorization_pending", "error_description": "Waiting for the code to be confirmed."}
# More than any bounded loop here asks: past it, the CLI would have gone on for ever.
RUNAWAY = 100_000


class Runaway(BaseException):
    """Raised past ``RUNAWAY`` requests: a BaseException, so no `except Exception` in the CLI swallows it."""


def _answer(status: int, body: Any, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers.update({"Content-Type": "application/json", **headers})
    return response


class HostilePortal:
    """Answers each request with ``respond(method, url)``; keeps the URLs asked, and its clock."""

    def __init__(self, respond: Callable[[str, str], requests.Response], monkeypatch: pytest.MonkeyPatch) -> None:
        self.respond = respond
        self.asked: list[str] = []
        self.now = 1000.0
        self.slept: list[float] = []
        monkeypatch.setattr(requests.Session, "request", self._request)
        monkeypatch.setattr(auth_commands.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(auth_commands.time, "sleep", self._sleep)

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        if len(self.asked) >= RUNAWAY:
            raise Runaway(f"{len(self.asked)} requests: the CLI did not stop")
        params = kwargs.get("params")
        self.asked.append(url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""))
        return self.respond(method, url)

    def _sleep(self, seconds: float) -> None:
        if len(self.slept) >= RUNAWAY:
            raise Runaway("slept too often: the CLI did not stop")
        self.slept.append(seconds)
        self.now += seconds


def _device_flow(
    start: dict[str, Any], poll: Callable[[], requests.Response]
) -> Callable[[str, str], requests.Response]:
    def respond(method: str, url: str) -> requests.Response:
        if url.endswith("/api/cli/device/"):
            body = {"device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": f"{BASE}/cli/device/"}
            return _answer(200, body | start)
        return poll()

    return respond


def _login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> int:
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    return main(["auth", "login", "--no-browser", "--portal", BASE, *args])


@pytest.mark.parametrize("interval", [10**9, 3601, 61])
def test_a_huge_poll_interval_is_clamped_and_the_code_still_expires_on_time(
    interval: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    portal = HostilePortal(_device_flow({"interval": interval, "expires_in": 600}, lambda: _answer(400, PENDING)),
                           monkeypatch)  # fmt: skip

    assert _login(monkeypatch, tmp_path) == Exit.AUTH

    assert max(portal.slept) == auth_commands.MAX_POLL_SECONDS
    assert sum(portal.slept) == 600  # no sleep past the code's end
    assert "The code expired before it was confirmed" in capsys.readouterr().err


@pytest.mark.parametrize("interval", [0, -5, "soon", None, 0.001])
def test_a_zero_negative_or_unreadable_poll_interval_still_waits_between_polls(
    interval: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    portal = HostilePortal(_device_flow({"interval": interval, "expires_in": 60}, lambda: _answer(400, PENDING)),
                           monkeypatch)  # fmt: skip

    assert _login(monkeypatch, tmp_path) == Exit.AUTH

    assert min(portal.slept) >= auth_commands.MIN_POLL_SECONDS
    assert len(portal.asked) <= 1 + 60 // auth_commands.MIN_POLL_SECONDS + 1
    assert "The code expired before it was confirmed" in capsys.readouterr().err


@pytest.mark.parametrize("expires_in", [10**9, "forever", -1])
def test_a_code_lifetime_past_the_cap_or_unreadable_ends_within_the_cap(
    expires_in: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    portal = HostilePortal(_device_flow({"interval": 2, "expires_in": expires_in}, lambda: _answer(400, PENDING)),
                           monkeypatch)  # fmt: skip

    assert _login(monkeypatch, tmp_path) == Exit.AUTH

    assert sum(portal.slept) <= auth_commands.MAX_CODE_SECONDS
    assert "The code expired before it was confirmed" in capsys.readouterr().err


def test_slow_down_with_a_long_retry_after_waits_at_most_the_cap_each_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """slow_down adds 5 seconds to every later poll (RFC 8628) and Retry-After (at most an hour) is waited
    out, but neither beyond the cap: a portal answering slow_down for ever does not stretch the sign-in."""
    slow = {"error": "slow_down", "error_description": "Too many sign-in polls from this address."}
    portal = HostilePortal(
        _device_flow({"interval": 2, "expires_in": 600}, lambda: _answer(429, slow, **{"Retry-After": "3600"})),
        monkeypatch,
    )

    assert _login(monkeypatch, tmp_path) == Exit.AUTH

    assert portal.slept[:3] == [60, 60, 60]
    assert sum(portal.slept) == 600
    assert "The code expired before it was confirmed" in capsys.readouterr().err


def test_the_login_timeout_bounds_the_last_wait(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    portal = HostilePortal(_device_flow({"interval": 7, "expires_in": 600}, lambda: _answer(400, PENDING)),
                           monkeypatch)  # fmt: skip

    assert _login(monkeypatch, tmp_path, "--timeout", "10") == Exit.AUTH

    assert portal.slept == [7, 3]
    assert len(portal.asked) == 1 + 3  # the start, and a poll at 0, 7 and 10 seconds


# Retry-Afters that are no delta-seconds (ASCII digits) though str.isdigit() takes them: a superscript two
# and more digits than int() reads (both a ValueError of int()), an Arabic-Indic three.
ODD_RETRY_AFTERS = ["\u00b2", "\u0663", "9" * 5000]


@pytest.mark.parametrize("retry_after", ODD_RETRY_AFTERS)
def test_an_odd_retry_after_on_a_refusal_is_the_refusal(
    retry_after: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _signed_in(monkeypatch, tmp_path)
    refusal = _answer(403, {"detail": "You may not do that."}, **{"Retry-After": retry_after})
    HostilePortal(lambda method, url: refusal, monkeypatch)

    assert main(["requests", "cancel", "12"]) == Exit.REFUSED

    assert capsys.readouterr().err == "passport: You may not do that.\n"


@pytest.mark.parametrize("retry_after", ODD_RETRY_AFTERS)
def test_an_odd_retry_after_while_signing_in_is_no_wait_of_its_own(
    retry_after: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """slow_down with a Retry-After that is no number: the poll interval, 5 seconds longer, as without one."""
    slow = {"error": "slow_down", "error_description": "Too many sign-in polls from this address."}
    answers = iter([_answer(429, slow, **{"Retry-After": retry_after}), _answer(503, {"detail": "down"})])
    token = {"access_token": "t", "expires_at": "2099-01-01T00:00:00Z", "username": "alice"}
    portal = HostilePortal(
        _device_flow({"interval": 2, "expires_in": 600}, lambda: next(answers, _answer(200, token))), monkeypatch
    )

    assert _login(monkeypatch, tmp_path) == Exit.OK

    assert portal.slept == [7, 7]  # after the slow_down, and after the 503 (polled again)


def _signed_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    save_credentials(Credentials(portal=BASE, token="t", expires_at="2099-01-01T00:00:00Z", username="alice"))


def _request(number: int) -> dict[str, Any]:
    return {"id": number, "status": "active", "account": {"account_id": "123456789012"}, "grants": [],
            "expires_at": "2099-01-01T00:00:00Z", "reason": f"r{number}"}  # fmt: skip


def test_a_next_link_back_to_the_same_page_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _signed_in(monkeypatch, tmp_path)
    page = {"next": f"{BASE}/api/requests/?cursor=same", "results": [_request(1)]}
    portal = HostilePortal(lambda method, url: _answer(200, page), monkeypatch)

    assert main(["requests", "list"]) == Exit.ERROR

    assert len(portal.asked) == 2
    err = capsys.readouterr().err
    assert err.startswith("passport: The portal's list /api/requests/ links to a page it already gave"), err


def test_a_page_walk_that_never_ends_stops_after_max_pages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _signed_in(monkeypatch, tmp_path)
    pages = iter(range(RUNAWAY))

    def respond(method: str, url: str) -> requests.Response:
        number = next(pages)
        return _answer(200, {"next": f"{BASE}/api/requests/?cursor=c{number}", "results": [_request(number)]})

    portal = HostilePortal(respond, monkeypatch)

    assert main(["requests", "list"]) == Exit.ERROR

    assert len(portal.asked) == client.MAX_PAGES
    err = capsys.readouterr().err
    assert err.startswith(f"passport: The portal's list /api/requests/ goes on past {client.MAX_PAGES} pages"), err


@pytest.mark.parametrize(
    "link",
    [
        "https://elsewhere.example/api/requests/?cursor=c1",
        "http://127.0.0.2:9/api/requests/?cursor=c1",
        "http://user@127.0.0.1:9/api/requests/?cursor=c1",
        "ftp://127.0.0.1/api/requests/?cursor=c1",
        "//elsewhere.example/api/requests/?cursor=c1",
        "http://127.0.0.1:9/api/requests/?cursor=c1\x1b]52;c;aGk=\x07",
    ],
)
def test_a_next_link_to_another_host_is_refused(link: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = {"next": link, "results": [_request(1)]}
    portal = HostilePortal(lambda method, url: _answer(200, first), monkeypatch)

    with pytest.raises(CliError) as refused:
        Portal(BASE, "t").get_all("/api/requests/")

    assert portal.asked == [f"{BASE}/api/requests/"]
    assert refused.value.code == Exit.ERROR
    assert refused.value.message.startswith("The portal's list /api/requests/ links to a next page elsewhere (")
    assert "\x1b" not in refused.value.message and "\x07" not in refused.value.message


@pytest.mark.parametrize("page", ["a string", 7, None, {"results": "not a list"}, {"results": [], "next": 5}])
def test_a_page_that_is_not_a_page_is_an_error_not_a_traceback(page: object, monkeypatch: pytest.MonkeyPatch) -> None:
    HostilePortal(lambda method, url: _answer(200, page), monkeypatch)

    with pytest.raises(CliError) as refused:
        Portal(BASE, "t").get_all("/api/requests/")
    assert refused.value.code == Exit.ERROR
    assert refused.value.message.startswith(
        f"The portal at {BASE} (/api/requests/) answered something this CLI cannot read ("
    )


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_pages_on_the_portals_host_are_all_read_from_the_portal(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DRF builds ``next`` from the Host it was asked under; behind a TLS proxy its scheme (and port)
    may differ from the URL the CLI uses, which is where the next page is asked for."""

    def respond(method: str, url: str) -> requests.Response:
        cursor = urlsplit(url).query.removeprefix("cursor=")
        number = int(cursor or 0)
        following = f"{scheme}://127.0.0.1/api/requests/?cursor={number + 1}" if number < 2 else None
        return _answer(200, {"next": following, "results": [_request(number)]})

    portal = HostilePortal(respond, monkeypatch)

    items = Portal(BASE, "t").get_all("/api/requests/", {"scope": "mine"})

    assert [item["id"] for item in items] == [0, 1, 2]
    assert portal.asked == [f"{BASE}/api/requests/?scope=mine", f"{BASE}/api/requests/?cursor=1",
                            f"{BASE}/api/requests/?cursor=2"]  # fmt: skip
