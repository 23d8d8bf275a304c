"""The Logbook entries of a session through the recording SSH proxy name the CLI token that opened its
connection (``cli_token``, audit.origin), as the API's entries for the same person and token do: the
session's start and end and the portal's own login to the instance. Real OpenSSH client, worker, daphne
and devcloud sshd."""

from __future__ import annotations

import pytest

from audit.models import LogbookEntry
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def test_proxy_session_entries_name_the_cli_token(proxied: Proxied) -> None:
    result = proxied.ssh("true")
    assert result.returncode == 0, result.stderr
    request_id = proxied.access_request.pk
    issued = list(LogbookEntry.objects.filter(action="certificate.issued", request_id=request_id))
    # The CLI's own certificate (the API, with the token): named.
    assert any("cli_token" in entry.detail for entry in issued), [e.detail for e in issued]
    token_ids = {entry.detail["cli_token"] for entry in issued if "cli_token" in entry.detail}
    started = wait_for(
        lambda: [
            e
            for e in LogbookEntry.objects.filter(action="terminal.started", request_id=request_id)
            if e.detail.get("client") == "cli"
        ],
        what="the proxy session's terminal.started",
    )
    ended = wait_for(
        lambda: list(LogbookEntry.objects.filter(action="terminal.ended", request_id=request_id)),
        what="terminal.ended",
    )
    upstream = [e for e in issued if e.detail.get("principal", "").startswith("grant-")]  # the proxy's own login
    assert upstream, [e.detail for e in issued]
    missing = [
        (e.action, e.detail.get("principal") or e.detail.get("client"))
        for e in [*upstream, *started, *ended]
        if "cli_token" not in e.detail
    ]
    assert not missing, f"entries of the token's proxy session without cli_token: {missing}"
    # The same token as the API's: the one the CLI signed in with.
    assert {e.detail["cli_token"] for e in [*upstream, *started, *ended]} <= token_ids
