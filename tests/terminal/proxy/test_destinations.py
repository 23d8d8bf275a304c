"""``ssh -L`` through the recording proxy to a destination beyond the instance (an RDS endpoint in
the product notes), with the real OpenSSH client, the real worker and the devcloud host's sshd.

A listener on another loopback address (127.0.0.2) stands in for the database: the proxy and the
instance's permitopen compare the literal the account lists, so the test forwards to that literal."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry, RefusalTally
from requests_app.models import AccessRequest
from tests.sshd import greeter, sshd_available, stop_ssh
from tests.stack import free_port, wait_for
from tests.terminal.proxy.conftest import in_one_refusal_window, proxied_request
from tests.terminal.proxy.test_security import _read_some, refusals

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

STAND_IN = "127.0.0.2"


def test_ssh_L_reaches_the_requests_destination_and_nothing_added_or_beside_it(
    prod: AwsAccount, daphne: str, tmp_path: Path
) -> None:
    with greeter(STAND_IN, b"RDS-STAND-IN\n") as approved, greeter(STAND_IN, b"NOT-APPROVED\n") as added:
        destination = f"{STAND_IN}:{approved}"
        AwsAccount.objects.filter(pk=prod.pk).update(forward_destinations=[destination])
        proxied = proxied_request(prod, daphne, tmp_path)
        in_one_refusal_window()
        access_request = proxied.access_request
        assert AccessRequest.objects.get(pk=access_request.pk).forward_destinations == [destination]
        # An admin adds a destination after the request was approved: it is not this request's.
        AwsAccount.objects.filter(pk=prod.pk).update(forward_destinations=[destination, f"{STAND_IN}:{added}"])
        to_approved, to_added, to_other_host, to_other_port = (free_port() for _ in range(4))
        forward = subprocess.Popen(
            ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-N",
             "-L", f"{to_approved}:{destination}",
             "-L", f"{to_added}:{STAND_IN}:{added}",
             "-L", f"{to_other_host}:127.0.0.3:{approved}",
             "-L", f"{to_other_port}:{STAND_IN}:{approved + 1 if approved < 65535 else approved - 1}",
             "web-1"],
            env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            assert _read_some(to_approved, deadline) == b"RDS-STAND-IN\n"
            assert _read_some(to_added, deadline) == b""
            assert _read_some(to_other_host, deadline) == b""
            assert _read_some(to_other_port, deadline) == b""
            closed = wait_for(
                lambda: LogbookEntry.objects.filter(action="forward.closed", request_id=access_request.pk).first(),
                what="forward.closed",
            )
            # Taken off the account: closed for this request at once, on the same SSH connection.
            AwsAccount.objects.filter(pk=prod.pk).update(forward_destinations=[f"{STAND_IN}:{added}"])
            assert _read_some(to_approved, deadline) == b""
        finally:
            stop_ssh(forward)
    # On record: where the forward went, and for how long, as for the instance's own ports.
    assert closed.detail["target"] == destination and closed.detail["client"] == "cli"
    assert closed.detail["bytes_from_instance"] == len(b"RDS-STAND-IN\n")
    refused = wait_for(
        lambda: found if len(found := refusals(access_request.pk, "port forward")) >= 2 else None,
        what="the other forwards refused",
    )
    by_reason = {entry.detail["reason"]: entry.detail for entry in refused}
    assert len(refused) == 2, [entry.detail for entry in refused]
    # The three refused for the same reason: the first of them written, each counted under its key.
    beside = by_reason["only the instance itself and the request's destinations can be reached"]
    assert (beside["host"], beside["port"]) in {
        (STAND_IN, added),
        ("127.0.0.3", approved),
        (STAND_IN, approved + 1 if approved < 65535 else approved - 1),
    }
    assert beside["allowed_destinations"] == [destination]
    assert RefusalTally.objects.get(action="proxy.refused", reason=beside["refusal_key"]).count == 3
    # After it was taken off the account.
    gone = by_reason["only the instance itself can be reached"]
    assert (gone["host"], gone["port"], gone["allowed_destinations"]) == (STAND_IN, approved, [])
    assert LogbookEntry.objects.filter(action="forward.closed", request_id=access_request.pk).count() == 1
