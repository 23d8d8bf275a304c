"""Bad input is a CLI message and an exit code, never a traceback: a portal URL that answers 200 with
something other than the JSON the CLI reads (a typo'd host's page, a proxy's or a Wi-Fi sign-in page,
JSON of another shape), and a credentials file that holds no sign-in the CLI can send.

The portal here is a small HTTP server answering every request with one body; the CLI runs as people
run it, in a process of its own, so that a traceback would show on its stderr."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNREADABLE = "answered something this CLI cannot read"


@dataclass
class GarbagePortal:
    """Answers 200 with ``body`` (as JSON) to every GET and POST."""

    url: str
    body: bytes = b""


@pytest.fixture
def portal() -> Iterator[GarbagePortal]:
    answering = GarbagePortal("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answering.body)))
            self.end_headers()
            self.wfile.write(answering.body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    answering.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield answering
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PASSPORT_CONFIG_DIR": str(config), "BROWSER": "true"}
    env.pop("PASSPORT_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "passport_cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def _config(tmp_path: Path, credentials: str | None) -> Path:
    config = tmp_path / "passport"
    config.mkdir(mode=0o700)
    if credentials is not None:
        (config / "credentials.json").write_text(credentials)
        (config / "credentials.json").chmod(0o600)
    return config


def _signed_in(tmp_path: Path, portal: str, token: str = "t0ken") -> Path:  # noqa: S107 (a test's token)
    return _config(tmp_path, json.dumps({"portal": portal, "token": token, "expires_at": "2099-01-01T00:00:00Z"}))


def _one_message(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line the CLI printed for the error it exited ``code`` with (no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr[-800:]
    assert result.returncode == code, (result.returncode, result.stderr[-800:])
    lines = [line for line in result.stderr.splitlines() if line.startswith("passport: ")]
    assert lines, result.stderr
    return lines[-1]


GARBAGE = [
    pytest.param(b"<html><body>Welcome to the hotel Wi-Fi</body></html>", id="html"),
    pytest.param(b"[1, 2]", id="list"),
    pytest.param(b"null", id="null"),
    pytest.param(b'"x"', id="string"),
    pytest.param(b"7", id="number"),
    pytest.param(b"{}", id="empty-object"),
    # JSON nested deeper than Python's parser goes: its RecursionError is an answer the CLI cannot read too.
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-too-deep"),
]
COMMANDS = [
    pytest.param(("auth", "login", "--no-browser"), id="auth-login"),
    pytest.param(("requests", "cancel", "1"), id="requests-cancel"),
    pytest.param(("requests", "list"), id="requests-list"),
    pytest.param(("ssh-config",), id="ssh-config"),
]


@pytest.mark.parametrize("body", GARBAGE)
@pytest.mark.parametrize("args", COMMANDS)
def test_a_portal_answering_what_the_cli_cannot_read_is_one_message_and_exit_1(
    portal: GarbagePortal, tmp_path: Path, body: bytes, args: tuple[str, ...]
) -> None:
    portal.body = body
    config = _signed_in(tmp_path, portal.url)
    extra = ("--portal", portal.url) if args[0] == "auth" else ()

    message = _one_message(_run(config, *args, *extra), 1)

    assert message.startswith(f"passport: The portal at {portal.url} (/api/"), message
    assert UNREADABLE in message and message.endswith("A proxy or a network sign-in page may have answered instead.")


@pytest.mark.parametrize(
    ("args", "body", "said"),
    [
        (("requests", "cancel", "1"), b"[1, 2]", "/api/requests/1/cancel/) {} (a list, not a JSON object)"),
        (("requests", "cancel", "1"), b"null", "/api/requests/1/cancel/) {} (null or nothing, not a JSON object)"),
        (("requests", "cancel", "1"), b"7", "/api/requests/1/cancel/) {} (a whole number, not a JSON object)"),
        (("requests", "cancel", "1"), b"{}", "/api/requests/1/cancel/) {} (no 'id' where a whole number belongs)"),
        (("auth", "login", "--no-browser"), b"{}", "/api/cli/device/) {} (no 'user_code' where text belongs)"),
        (("ssh-config",), b"[[1]]", "/api/requests/) {} ('results' holds something other than JSON objects)"),
    ],
)
def test_the_message_says_what_came_instead(
    portal: GarbagePortal, tmp_path: Path, args: tuple[str, ...], body: bytes, said: str
) -> None:
    portal.body = body
    extra = ("--portal", portal.url) if args[0] == "auth" else ()

    message = _one_message(_run(_signed_in(tmp_path, portal.url), *args, *extra), 1)

    assert message.startswith(f"passport: The portal at {portal.url} ({said.format(UNREADABLE)}. Is that"), message


def test_the_message_quotes_the_start_of_a_page_escaped(portal: GarbagePortal, tmp_path: Path) -> None:
    portal.body = b"<html>\x1b]52;c;ZWNobyBoaQ==\x07\n<title>Sign in</title>" + b"x" * 500

    message = _one_message(_run(_signed_in(tmp_path, portal.url), "requests", "cancel", "1"), 1)

    assert message == (
        f"passport: The portal at {portal.url} (/api/requests/1/cancel/) {UNREADABLE} "
        "(not a JSON object: '<html>\\x1b]52;c;ZWNobyBoaQ==\\x07\\n<title>Sign in</title>" + "x" * 24 + "…'). "
        "Is that the portal's URL? A proxy or a network sign-in page may have answered instead."
    )


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"results": [1]}', "'results' holds something other than JSON objects"),
        (b'{"results": [{"id": 7, "status": "pending", "reason": "r"}]}', "no 'grants' where a list belongs"),
        (
            b'{"results": [{"id": true, "status": "pending", "reason": "r", "grants": []}]}',
            "true or false as 'id' where a whole number belongs",
        ),
        (b'{"results": [], "next": 5}', "a 'next' page that is no URL"),
    ],
)
def test_a_list_of_another_shape_names_what_it_lacks(
    portal: GarbagePortal, tmp_path: Path, body: bytes, said: str
) -> None:
    portal.body = body

    message = _one_message(_run(_signed_in(tmp_path, portal.url), "requests", "list"), 1)

    assert message.startswith(f"passport: The portal at {portal.url} (/api/requests/) {UNREADABLE} ({said})")


def test_a_request_of_the_right_shape_still_lists(portal: GarbagePortal, tmp_path: Path) -> None:
    item = {"id": 7, "status": "pending", "reason": "deploy", "account": {"account_id": "123456789012"}}
    grant = {"instance_id": "i-0123456789abcdef0", "name": "web-1", "platform": "linux", "status": "pending"}
    portal.body = json.dumps({"results": [item | {"grants": [grant]}], "next": None}).encode()

    result = _run(_signed_in(tmp_path, portal.url), "requests", "list")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split() == [
        "7",
        "pending",
        "123456789012",
        "i-0123456789abcdef0(web-1)",
        "deploy",
    ]


@pytest.mark.parametrize("content", ["[1]", "null", '"x"', "7"])
@pytest.mark.parametrize(
    "args", [("requests", "list"), ("auth", "status"), ("auth", "logout")], ids=["list", "status", "logout"]
)
def test_a_credentials_file_that_is_not_an_object_is_refused_with_exit_3(
    tmp_path: Path, content: str, args: tuple[str, ...]
) -> None:
    config = _config(tmp_path, content)

    message = _one_message(_run(config, *args), 3)

    assert message == (
        f"passport: {config / 'credentials.json'} holds no sign-in (not a JSON object): "
        "run `passport auth login` again."
    )


@pytest.mark.parametrize("token", ["t\u2603", "t\ud800", "t\x1b[2J", "t k", ""])
def test_a_stored_token_no_http_header_can_carry_is_refused_with_exit_3(tmp_path: Path, token: str) -> None:
    # A portal that would answer: the CLI must refuse the token before it asks anything.
    config = _signed_in(tmp_path, "http://127.0.0.1:1", token=token)

    message = _one_message(_run(config, "requests", "list"), 3)

    assert message == (
        f"passport: {config / 'credentials.json'} holds a token that cannot be sent "
        "(only visible ASCII characters can): run `passport auth login` again."
    )


def test_auth_login_refuses_a_token_no_http_header_can_carry(portal: GarbagePortal, tmp_path: Path) -> None:
    """The device start and the token answer alike: a code, then a token with a snowman in it."""
    start = {"device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": f"{portal.url}/cli/device/"}
    token = {"access_token": "t\u2603", "expires_at": "2099-01-01T00:00:00Z", "username": "alice"}
    portal.body = json.dumps(start | token).encode()
    config = _config(tmp_path, None)

    message = _one_message(_run(config, "auth", "login", "--no-browser", "--portal", portal.url), 1)

    assert message == (
        f"passport: The portal at {portal.url} (/api/cli/token/) {UNREADABLE} (an access token with characters "
        "no HTTP header can carry). Is that the portal's URL? A proxy or a network sign-in page may have answered "
        "instead."
    )
    assert not (config / "credentials.json").exists()
