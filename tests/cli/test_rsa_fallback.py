"""`passport connect` and `ssh-config` on an account whose CLI sessions are direct (ssh meets the
instance's own sshd) to an instance whose sshd takes no Ed25519 key: without --key-type the CLI offers
its RSA key after the Ed25519 one, and says so; with --key-type ed25519 it offers that alone."""

from __future__ import annotations

import subprocess

import pytest

from accounts.models import AwsAccount
from tests.cli.conftest import Cli, active_request_from_cli
from tests.sshd import sshd_available
from tests.stack import SSHD_WITHOUT_ED25519, Cloud, host_sshd_options

CLI_PORTAL = "asgi"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def test_direct_sessions_fall_back_to_rsa_unless_a_key_type_is_given(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions="direct")
    access_request = active_request_from_cli(cli, prod, "web-1", "rsa hosts")
    username = access_request.grants.get().username

    with host_sshd_options(aws, "web-1", SSHD_WITHOUT_ED25519) as sshd:
        mark = sshd.log_mark()
        connected = cli.run("connect", "web-1", "--", "whoami")
        assert connected.returncode == 0, connected.stderr
        assert connected.stdout.strip() == username
        assert "offering an RSA key after the Ed25519 one" in connected.stderr
        sshd.wait_for_log(rf"Accepted publickey for {username} .*RSA-CERT", since=mark)

        written = cli.run("ssh-config", check=True)
        assert "offering an RSA key" in written.stderr
        login = subprocess.run(
            ["ssh", "-F", written.stdout.strip(), "-o", "BatchMode=yes", "web-1", "whoami"],
            env=cli.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        assert login.returncode == 0 and login.stdout.strip() == username, login.stderr

        forced = cli.run("connect", "--key-type", "ed25519", "web-1", "--", "whoami")
        assert forced.returncode == 255 and "Permission denied" in forced.stderr
        assert "RSA" not in forced.stderr
