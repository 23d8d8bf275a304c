"""A certificate a person got while the account's CLI sessions were direct, once an admin made them
recorded: it stays valid until the request ends, and the recording proxy gives an exec channel
that can relay to the instance's own sshd (socat here; ``nc localhost 22`` on a real host). Used as
a ProxyCommand, that relay would carry a login past the proxy (a shell nobody records) unless the
host stops trusting the certificate's principal: the switch rewrites the grant's lines without the
person's direct principal (``requests_app.services.provisioning.upkeep``), while the portal's own
login, by the grant's principal, goes on working."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services as request_services
from requests_app.models import Grant
from tests.sshd import sshd_available
from tests.stack import Cloud, wait_for
from tests.terminal.proxy.conftest import Proxied

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def _login(key: Path, username: str, env: dict[str, str], *, route: list[str]) -> subprocess.CompletedProcess[bytes]:
    """ssh to the instance's sshd with ``key`` and its certificate, by ``route`` (options and host)."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(key), f"-oCertificateFile={key}-cert.pub", "-oIdentitiesOnly=yes",
         "-oStrictHostKeyChecking=no", "-oUserKnownHostsFile=/dev/null", "-oBatchMode=yes", "-l", username, *route,
         "echo UNRECORDED-$((6*7))"],
        env=env, capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _relayed(proxied: Proxied, sshd_port: int) -> list[str]:
    """Through an exec channel of the recording proxy that relays to the instance's sshd."""
    relay = f"ssh -F {proxied.config} -oBatchMode=yes web-1 socat STDIO TCP:127.0.0.1:{sshd_port}"
    return [f"-oProxyCommand={relay}", "instance"]


def _refreshed(request_id: int, *, direct_login: bool) -> list[LogbookEntry]:
    return list(
        LogbookEntry.objects.filter(
            action="grant.keys_refreshed", request_id=request_id, detail__direct_login=direct_login
        )
    )


def test_a_direct_era_certificate_gives_no_unrecorded_shell_once_sessions_are_recorded(
    proxied: Proxied, prod: AwsAccount, aws: Cloud, tmp_path: Path
) -> None:
    # The account's CLI sessions are direct (a queryset's update: nothing queued) and the grant's host
    # is told so, as the periodic task would; alice's own key is signed, as `passport ssh-config` does.
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    request_services.grant_refresh_authorized_keys(grant_id=proxied.grant.pk)
    key = tmp_path / "direct-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    grant = Grant.objects.select_related("request__account", "instance").get(pk=proxied.grant.pk)
    certificates = request_services.grant_issue_certificate(
        grant=grant, user=proxied.alice, public_key=Path(f"{key}.pub").read_text()
    )
    Path(f"{key}-cert.pub").write_text(certificates[0] + "\n")
    sshd_port = aws.devcloud.runtime.hosts.sshd_port(grant.instance.instance_id)
    # While direct, the certificate logs in to the instance's sshd (devcloud's, on a loopback port).
    direct = ["-p", str(sshd_port), "127.0.0.1"]
    before = _login(key, grant.username, proxied.cli.env, route=direct)
    assert b"UNRECORDED-42" in before.stdout, before.stderr[-400:]

    # An admin makes the account's CLI sessions recorded (a save, as the admin's form does).
    account = AwsAccount.objects.get(pk=prod.pk)
    account.cli_sessions = AwsAccount.CliSessions.RECORD
    account.save()
    # The hosts are rewritten by the worker (Run Command); a fix that never rewrites them fails below.
    for _ in range(120):
        if _refreshed(proxied.access_request.pk, direct_login=False):
            break
        subprocess.run(["sleep", "0.5"], check=True)

    # The relay's own exec channel is recorded, but what it carries is the nested login's ciphertext.
    nested = _login(key, grant.username, proxied.cli.env, route=_relayed(proxied, sshd_port))
    assert b"UNRECORDED-42" not in nested.stdout, (
        "a shell on an account whose CLI sessions are recorded, logged in past the proxy with a certificate "
        f"issued while they were direct: {nested.stdout!r} {nested.stderr[-400:]!r}"
    )
    assert b"Permission denied" in nested.stderr, nested.stderr[-400:]
    after = _login(key, grant.username, proxied.cli.env, route=direct)
    assert after.returncode == 255 and b"UNRECORDED-42" not in after.stdout
    assert _refreshed(proxied.access_request.pk, direct_login=False)
    # The portal's own login (the grant's principal) still reaches the instance, recorded.
    recorded = proxied.ssh("echo RECORDED-$((6*7))")
    assert b"RECORDED-42" in recorded.stdout, recorded.stderr[-400:]
    wait_for(lambda: Grant.objects.get(pk=grant.pk).key_direct_login is False, what="the grant's lines on record")
