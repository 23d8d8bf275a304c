"""Name tags are written by anyone with ec2:CreateTags: through the real inventory sync and the real
`passport ssh-config`, none of them may add an ssh option or become a Host alias (checked with `ssh -G`).

The workstation's config directory has a space and a ``%h`` in its path, so the quoting and
``%%`` of every path is checked by a real login too."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from accounts.models import AwsAccount
from devcloud.seed import CREDENTIALS
from requests_app import services
from requests_app.models import AccessRequest, Instance, RequestStatus
from requests_app.services import inventory_sync
from tests.cli.conftest import CLI_TEST_SESSIONS, Cli, active_request_from_cli
from tests.factories import make_membership, make_user
from tests.sshd import sshd_available
from tests.stack import Cloud, wait_for

# ssh goes through `passport proxy`, which opens the portal's WebSocket first: the ASGI portal.
CLI_PORTAL = "asgi"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

# What a Name tag may hold (devcloud's EC2 keeps each as given), and what an attacker wants of it.
HOSTILE_NAMES = [
    "web-1\n  ProxyCommand sh -c 'touch /tmp/passport-pwned'",  # a new line, a new option
    "web-1\tPermitLocalCommand yes\tLocalCommand touch /tmp/passport-pwned",  # tabs split tokens too
    "web-1 ProxyCommand=touch",  # one more token on the Host line
    'web-1" IdentityFile "/tmp/passport-key',  # a quote
    "%d%h%u%r",  # ssh_config tokens
    "*",  # every host
    "!web-1,*",  # negation and a list
    "-oProxyCommand=touch",  # an option where an alias goes
    "web-1\x9b31m",  # C1 CSI: the one control character EC2's XML can carry
    "\u202eweb-1",  # bidi override
    "w" * 300,  # longer than the column and than any alias
]
KEYWORDS = {
    "Host", "HostName", "User", "IdentityFile", "IdentitiesOnly", "UserKnownHostsFile", "StrictHostKeyChecking",
    "CertificateFile", "ProxyCommand", "GlobalKnownHostsFile", "UpdateHostKeys",
}  # fmt: skip
# Recorded sessions pin the host CA: GlobalKnownHostsFile and UpdateHostKeys besides the direct ones.
# Direct ones offer the RSA key after the Ed25519 one: a second IdentityFile and two more CertificateFile.
OPTION_LINES = 7 if CLI_TEST_SESSIONS == "record" else 8


def _set_name(cloud: Cloud, account: AwsAccount, instance_id: str, name: str) -> None:
    """Tag the instance in its own account, as the account's people would (boto3 against devcloud)."""
    sts = boto3.client("sts", endpoint_url=cloud.endpoint_url, region_name="us-east-1", **CREDENTIALS)
    # As the account's administrator: the portal's role may not tag instances.
    admin = next(item["admin_role_arn"] for item in cloud.manifest["accounts"] if item["id"] == account.account_id)
    credentials = sts.assume_role(RoleArn=admin, RoleSessionName="tests-tags")["Credentials"]
    ec2 = boto3.client(
        "ec2",
        endpoint_url=cloud.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "Name", "Value": name}])


def _ssh_g(cli: Cli, config: Path, host: str, *, check: bool = True) -> list[str]:
    """OpenSSH's own reading of the config for ``host`` (`ssh -G` runs nothing); [] if ssh refuses the host name."""
    result = subprocess.run(
        ["ssh", "-G", "-F", str(config), "--", host],
        env=cli.env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=check,
    )  # fmt: skip
    return result.stdout.splitlines() if result.returncode == 0 else []


def _assert_only_passport_options(text: str, web_id: str) -> None:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert [line for line in lines if line.startswith("Host ")] == [f"Host {web_id}"]
    assert {line.split()[0] for line in lines} <= KEYWORDS, text
    assert len(lines) == 4 + OPTION_LINES, text  # one block: Host, HostName, User, the options, ProxyCommand


def test_hostile_name_tags_add_no_option_and_no_alias(
    prod: AwsAccount, aws: Cloud, make_cli: Callable[[str], Cli]
) -> None:
    cli = make_cli("work station %h")
    web_id, db_id = aws.instance_id("web-1"), aws.instance_id("db-1")
    access_request = active_request_from_cli(cli, prod, web_id, "hostile tags")
    username = access_request.grants.get().username

    config = cli.config_dir / "ssh_config"
    try:
        cli.run("ssh-config", check=True)
        baseline = _ssh_g(cli, config, web_id)
        assert f"hostname {web_id}" in baseline and f"user {username}" in baseline
        assert _ssh_g(cli, config, "web-1")[1:] == baseline[1:]  # the alias: the same host (but for `host`)
        passport_proxy = next(line for line in baseline if line.startswith("proxycommand "))
        # The config directory is not the default one (XDG_CONFIG_HOME): written in, quoted, its %h as %%h.
        pinned = shlex.quote(str(cli.config_dir)).replace("%", "%%")
        assert passport_proxy.endswith(f" -m passport_cli proxy {access_request.pk} {web_id} --config-dir {pinned}")

        for name in [*HOSTILE_NAMES, db_id]:  # and another instance's id
            _set_name(aws, prod, web_id, name)
            assert not inventory_sync(account=prod).errors
            stored = Instance.objects.get(account=prod, instance_id=web_id)
            assert stored.name == name[:255]  # kept as it came: only never used as an alias
            assert not stored.name_is_host_alias or name == db_id

            result = cli.run("ssh-config", check=True)
            _assert_only_passport_options(config.read_text(), web_id)
            # OpenSSH reads exactly what it read before: no option of the tag's, passport's ProxyCommand only.
            assert _ssh_g(cli, config, web_id) == baseline, name
            # The Name, or the part of it an attacker would have people type, matches no Host of the file.
            for alias in {name, name.split()[0], name.lstrip("!-").split(",")[0]}:
                read = _ssh_g(cli, config, alias, check=False)
                assert passport_proxy not in read and f"hostname {web_id}" not in read, alias
            assert (
                f"of {web_id} cannot be an ssh Host alias" in result.stderr
                or f"of {web_id} could name another instance" in result.stderr
            ), result.stderr
            assert not {"\x9b", "\u202e", "\t"} & set(result.stderr)
        assert not Path("/tmp/passport-pwned").exists()

        # The instance id still logs in, through a config directory with a space and %h in its path.
        login = subprocess.run(
            ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", web_id, "whoami"],
            env=cli.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        assert login.returncode == 0, login.stderr
        assert login.stdout.strip() == username
    finally:
        _set_name(aws, prod, web_id, "web-1")
        inventory_sync(account=prod)
        _complete(access_request)


def _complete(access_request: AccessRequest) -> None:
    """Leave no short-lived user behind on the shared devcloud hosts for the tests after this one."""
    services.access_request_complete(access_request=access_request, actor=access_request.requester)
    wait_for(
        lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED, what="completed"
    )


def test_a_name_tag_with_esc_stops_no_one_and_reaches_no_terminal(prod: AwsAccount, aws: Cloud, cli: Cli) -> None:
    """ESC cannot travel in EC2's XML (the sync of that region fails and keeps its rows); a row holding one
    anyway (an older sync, another path) is still only shown escaped and never written as an alias."""
    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    web_id = aws.instance_id("web-1")
    hostile = "web-1\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J"
    try:
        _set_name(aws, prod, web_id, hostile)
        assert inventory_sync(account=prod).errors  # the region failed: its rows stay as they were
        assert Instance.objects.get(account=prod, instance_id=web_id).name == "web-1"
    finally:
        _set_name(aws, prod, web_id, "web-1")
    Instance.objects.filter(account=prod, instance_id=web_id).update(name=hostile)

    assert cli.login(alice).returncode == 0
    created = cli.run("requests", "create", "--account", prod.account_id, "-i", web_id, "--reason", "esc")
    assert created.returncode == 0, created.stderr
    access_request = AccessRequest.objects.get(requester=alice)
    services.access_request_approve(access_request=access_request, approver=approver)
    wait_for(lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE, what="active")

    listed = cli.run("requests", "list", check=True)
    written = cli.run("ssh-config", check=True)
    for output in (created.stdout, listed.stdout, written.stdout, written.stderr):
        assert "\x1b" not in output and "\x07" not in output
    assert "web-1\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J" in created.stdout + written.stderr
    _assert_only_passport_options((cli.config_dir / "ssh_config").read_text(), web_id)
    inventory_sync(account=prod)
    _complete(access_request)
