"""The CLI through the portal's recording proxy to an instance whose sshd takes no Ed25519 key: the CLI
still logs in to the proxy with its Ed25519 certificate, and the portal's own hop to the instance falls
back to an RSA key (terminal.bridge.LoginKeys). The host's own sshd is restarted with RSA alone."""

from __future__ import annotations

import pytest

from audit.models import LogbookEntry
from tests.sshd import sshd_available
from tests.stack import SSHD_WITHOUT_ED25519, Cloud, host_sshd_options
from tests.terminal.proxy.conftest import Proxied

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def test_the_proxy_reaches_a_host_without_ed25519_with_an_rsa_key(proxied: Proxied, aws: Cloud) -> None:
    with host_sshd_options(aws, "web-1", SSHD_WITHOUT_ED25519) as sshd:
        mark = sshd.log_mark()
        result = proxied.ssh("whoami")
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().strip() == proxied.grant.username
        log = sshd.wait_for_log(rf"Accepted publickey for {proxied.grant.username} .*RSA-CERT", since=mark)
    assert "ssh-ed25519-cert-v01@openssh.com not in PubkeyAcceptedAlgorithms" in log

    issued = [
        entry.detail["signature_algorithm"]
        for entry in LogbookEntry.objects.filter(
            request_id=proxied.access_request.pk, action="certificate.issued"
        ).order_by("pk")
    ]
    # The CLI's certificate (ssh-config), then the portal's hop: Ed25519, refused, then RSA's two.
    assert issued == ["ssh-ed25519", "ssh-ed25519", "rsa-sha2-512", "ssh-rsa"]
