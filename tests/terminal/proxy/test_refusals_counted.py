"""What a CLI proxy connection's client asks for and is refused reaches the Logbook without letting a
client grow it: the same refusal of the same person on the same grant is written once per refusal
window (``proxy.refused``, with its ``refusal_key``) and each one after it only counted
(``audit.refusals``), and an environment refusal names at most 32 of the variables sent, saying how
many more there were. Real OpenSSH client, worker, daphne and devcloud sshd."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import LogbookEntry, RefusalTally
from audit.refusals import logbook_refusals_flush
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied, in_one_refusal_window
from tests.terminal.proxy.test_security import refusals

pytestmark = [
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.integration,
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

ASKS = 12
VARIABLES = 1500


def _counted(refusal_key: str, at_least: int) -> RefusalTally:
    return wait_for(
        lambda: RefusalTally.objects.filter(action="proxy.refused", reason=refusal_key, count__gte=at_least).first(),
        what=f"{at_least} refusals counted",
    )


def test_the_same_refusal_asked_again_and_again_is_one_entry_and_a_count(proxied: Proxied, tmp_path: Path) -> None:
    in_one_refusal_window()
    control = str(tmp_path / "cm")
    master = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-oControlMaster=yes", f"-oControlPath={control}", "-N",
         "web-1"],
        env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: os.path.exists(control), what="the ControlMaster listening")
        for _ in range(ASKS):
            asked = proxied.ssh("-oControlMaster=no", f"-oControlPath={control}", "-s", "nosuch")
            assert asked.returncode != 0
        [entry] = wait_for(lambda: refusals(proxied.access_request.pk, "subsystem"), what="the refusal on record")
        tally = _counted(entry.detail["refusal_key"], ASKS)
    finally:
        master.terminate()
        master.wait(10)
    assert entry.detail["reason"] == "only sftp is relayed" and entry.detail["subsystem"] == "nosuch"
    assert entry.actor_id == proxied.alice.pk and f" {proxied.grant.instance.instance_id} " == entry.instance_ids
    assert tally.count == ASKS and tally.source == f"user:{proxied.alice.pk}"
    assert len(refusals(proxied.access_request.pk, "subsystem")) == 1
    # Once the window has closed, its summary gives the count under the entry's key.
    assert logbook_refusals_flush(now=timezone.now() + timedelta(days=2)) == 1
    summary = LogbookEntry.objects.get(action="proxy.refused", detail__summary=True)
    assert summary.detail["counts"] == [
        {"source": f"user:{proxied.alice.pk}", "reason": entry.detail["refusal_key"], "count": ASKS}
    ]


def _with_variables(proxied: Proxied, count: int, command: str) -> subprocess.CompletedProcess[bytes]:
    """``ssh web-1 COMMAND`` sending ``count`` LC_* variables no locale would be named by."""
    env = dict(proxied.cli.env)
    env.update({f"LC_MANY{number:04d}": "v" * 300 for number in range(count)})
    return subprocess.run(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-oSendEnv=LC_*", "web-1", command],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip


def test_an_environment_refusal_names_at_most_32_variables(proxied: Proxied) -> None:
    in_one_refusal_window()
    ran = _with_variables(proxied, VARIABLES, "echo ran")
    assert ran.stdout == b"ran\n", ran.stderr
    [entry] = wait_for(lambda: refusals(proxied.access_request.pk, "environment"), what="the refusal on record")
    variables = entry.detail["variables"]
    assert len(variables) == 32 and entry.detail["variables_not_shown"] == VARIABLES - 32
    assert all(name.startswith("LC_MANY") and "300 bytes" in value for name, value in variables.items())
    assert len(json.dumps(entry.detail)) <= 16 * 1024
    # The same refusal in the next session of the window: counted, not written again.
    again = _with_variables(proxied, 1, "echo again")
    assert again.stdout == b"again\n", again.stderr
    _counted(entry.detail["refusal_key"], 2)
    assert len(refusals(proxied.access_request.pk, "environment")) == 1
