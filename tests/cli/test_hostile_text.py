"""Reasons, Names and usernames reach an approver's terminal through every `passport` listing and message:
the real CLI against a live portal prints each control, escape sequence and bidi override escaped."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from requests_app.models import AccessRequest
from tests.cli.conftest import ROOT, Cli
from tests.cli.helpers import active_grant
from tests.factories import make_account, make_instance, make_membership, make_user

pytestmark = pytest.mark.usefixtures("live_db")

# OSC 52 writes the clipboard, CSI colours and clears, C1 CSI is one byte, a newline fakes a line,
# U+202E and U+2066 turn text around. Under 40 characters: `requests list` shows that much of a reason.
REASON = "\x1b]52;c;aGFja2Vk\x07 \x1b[31mred\x9b0m\nX: \u202elive\u2066"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\nX: ")
ESCAPED_REASON = "\\x1b]52;c;aGFja2Vk\\x07 \\x1b[31mred\\x9b0m\\nX: \\u202elive\\u2066"


def _assert_shown_escaped(result: subprocess.CompletedProcess[str], *escaped: str) -> None:
    for raw in RAW:
        assert raw not in result.stdout, (raw, result.stdout)
        assert raw not in result.stderr, (raw, result.stderr)
    for text in escaped:
        assert text in result.stdout + result.stderr, (text, result.stdout, result.stderr)


def test_every_listing_and_message_shows_portal_text_escaped(make_cli: Callable[[str], Cli]) -> None:
    alice = make_user("alice")
    approver = make_user("carol\x1b[8m\u202e")  # a username as an identity provider sent it
    prod = make_account()
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    web = make_instance(prod, "web\x1b[2J\u202e1")  # stored by an older sync, say
    requester, reviewer = make_cli("alice"), make_cli("carol")
    assert requester.login(alice).returncode == 0

    # The portal refuses such a reason now, naming the characters; the refusal is shown escaped.
    refused_reason = requester.run(
        "requests", "create", "--account", prod.account_id, "-i", web.instance_id, "--reason", REASON
    )
    assert refused_reason.returncode != 0
    _assert_shown_escaped(refused_reason, "control or direction-changing characters (U+001B, U+0007")
    assert not AccessRequest.objects.exists()
    # One an older portal stored: every listing still shows it escaped.
    created = requester.run(
        "requests", "create", "--account", prod.account_id, "-i", web.instance_id, "--reason", "deploy", check=True
    )
    _assert_shown_escaped(created, "reason: deploy", "web\\x1b[2J\\u202e1")
    AccessRequest.objects.update(reason=REASON)

    listed = requester.run("requests", "list", check=True)
    _assert_shown_escaped(listed, ESCAPED_REASON[:60], f"{web.instance_id}(web\\x1b[2J\\u202e1)")
    assert len(listed.stdout.splitlines()) == 2  # the header and one row, whatever the reason holds

    login = reviewer.login(approver)
    assert login.returncode == 0, login.stderr
    _assert_shown_escaped(login, "as carol\\x1b[8m\\u202e until")
    _assert_shown_escaped(reviewer.run("auth", "status", check=True), "as carol\\x1b[8m\\u202e until")
    every = reviewer.run("requests", "list", "--all", check=True)
    _assert_shown_escaped(every, ESCAPED_REASON[:60], "web\\x1b[2J\\u202e1")

    # The portal's error messages quote what was sent back: shown escaped too.
    refused = requester.run(
        "requests", "create", "--account", prod.account_id, "-i", "i-\x1b]52;c;eA==\x07\u202e", "--reason", "x"
    )
    assert refused.returncode == 5, refused.stderr
    _assert_shown_escaped(refused, "i-\\x1b]52;c;eA==\\x07\\u202e")
    unknown = requester.run("connect", "web\x1b[2J\u202e1")
    assert unknown.returncode == 4
    _assert_shown_escaped(unknown, "web\\x1b[2J\\u202e1 is not a ready instance")


def test_a_terminal_that_is_not_utf8_gets_text_it_can_show(cli: Cli) -> None:
    """A Latin-1 terminal (PYTHONIOENCODING stands in for LANG=de_DE.ISO-8859-1: no such locale is
    installed here) and a reason with an emoji: `requests list` prints it escaped, not a traceback."""
    grant = active_grant(cli, "record")
    AccessRequest.objects.filter(pk=grant.request_id).update(reason="deploy \U0001f680 hotfix")
    env = {**cli.env, "PYTHONIOENCODING": "latin-1", "PYTHONUTF8": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "passport_cli", "requests", "list"],
        cwd=ROOT, env=env, capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert b"Traceback" not in result.stderr, result.stderr.decode("latin-1")
    assert result.returncode == 0
    assert b"deploy \\U0001f680 hotfix" in result.stdout, result.stdout
