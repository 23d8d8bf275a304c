"""A browser terminal to an instance whose sshd takes no Ed25519 key (RHEL in FIPS mode, an admin's
PubkeyAcceptedAlgorithms): the real stack (worker, devcloud host, data channel), the host's own sshd
restarted with RSA alone. The portal falls back to an RSA key in the same connection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal.models import TerminalSession
from tests.sshd import sshd_available
from tests.stack import SSHD_WITHOUT_ED25519, Cloud, host_sshd_options, wait_for
from tests.terminal.helpers import Screen, open_shell, ticketed_grant

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def test_a_terminal_reaches_a_host_without_ed25519_with_an_rsa_key(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    _alice, access_request, grant, cookie, ticket = ticketed_grant(prod)

    async def session() -> Screen:
        screen = await open_shell(grant.pk, ticket, cookie)
        comm = screen.comm
        # whoami's answer behind a marker: the prompt alone names the user.
        await comm.send_to(bytes_data=b"echo u=$(whoami)\r")
        await screen.until(lambda s: f"u={grant.username}".encode() in s.output, timeout=20, what="whoami's answer")
        await comm.disconnect(code=1000, timeout=15)
        return screen

    with host_sshd_options(aws, "web-1", SSHD_WITHOUT_ED25519) as sshd:
        mark = sshd.log_mark()
        async_to_sync(session)()
        log = sshd.wait_for_log(rf"Accepted publickey for {grant.username} .*RSA-CERT", since=mark)
    assert "ssh-ed25519-cert-v01@openssh.com not in PubkeyAcceptedAlgorithms" in log  # offered first, refused

    wait_for(lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).exists(), what="the end")
    issued = [
        entry.detail
        for entry in LogbookEntry.objects.filter(request_id=access_request.pk, action="certificate.issued").order_by(
            "pk"
        )
    ]
    assert [detail["signature_algorithm"] for detail in issued] == ["ssh-ed25519", "rsa-sha2-512", "ssh-rsa"]
    # One grant, one window: the RSA certificates say exactly what the Ed25519 one said.
    same = {
        json.dumps({key: detail[key] for key in ("principal", "valid_after", "valid_before", "key_id")})
        for detail in issued
    }
    assert len(same) == 1
