"""`passport proxy`'s side of the WebSocket: where it connects, and how it says the portal's reasons."""

from __future__ import annotations

import pytest

from passport_cli.proxy_socket import EXIT_FOR_CLOSE, proxy_url, say


def test_the_url_follows_the_portal() -> None:
    assert proxy_url("https://passport.example/", 12, "i-0123456789abcdef0") == (
        "wss://passport.example/ws/cli/requests/12/grants/i-0123456789abcdef0/ssh/"
    )
    assert (
        proxy_url("http://127.0.0.1:8000/sub", 3, "i-1") == "ws://127.0.0.1:8000/sub/ws/cli/requests/3/grants/i-1/ssh/"
    )
    # Whatever the instance argument holds stays one path segment.
    assert proxy_url("http://p", 1, "../x?y#z") == "ws://p/ws/cli/requests/1/grants/..%2Fx%3Fy%23z/ssh/"


def test_a_reason_is_one_escaped_line(capsys: pytest.CaptureFixture[str]) -> None:
    say("The access request was completed;\x1b]0;owned\x07 this session\r\nis closed.\u202e")
    err = capsys.readouterr().err
    assert err.endswith("\r\n") and err.count("\n") == 1
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err
    assert err.startswith("passport: The access request was completed;\\x1b]0;owned\\x07")


def test_close_codes_map_to_the_documented_exit_statuses() -> None:
    assert EXIT_FOR_CLOSE[4000] == 7 and EXIT_FOR_CLOSE[4401] == 3 and EXIT_FOR_CLOSE[4404] == 4
    assert all(EXIT_FOR_CLOSE[code] == 5 for code in (4402, 4403, 4406, 4410))
