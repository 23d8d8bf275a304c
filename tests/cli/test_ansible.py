"""Ansible through `passport ssh-config`: ad-hoc modules reach a devcloud host as the short-lived user,
over the same certificate and Session Manager data channel as ssh (see test_ssh.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.models import AwsAccount
from requests_app.models import AccessRequest, RequestStatus
from tests.cli.conftest import Cli, active_request_from_cli
from tests.sshd import sshd_available
from tests.stack import Cloud, wait_for

ANSIBLE = shutil.which("ansible", path=str(Path(sys.executable).parent)) or shutil.which("ansible")

# ssh goes through `passport proxy`, which opens the portal's WebSocket first: the ASGI portal.
CLI_PORTAL = "asgi"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
    pytest.mark.skipif(ANSIBLE is None, reason="ansible-core is not installed (requirements/test.txt)"),
]


def _ansible(cli: Cli, workdir: Path, inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert ANSIBLE is not None
    env = {
        **cli.env,
        "LC_ALL": "C.UTF-8",
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-local-tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        # Ansible's default ControlPersist would leave ssh masters (and their `passport proxy`) running.
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o BatchMode=yes -o ConnectTimeout=60",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }
    return subprocess.run(
        [ANSIBLE, "-i", str(inventory), *args],
        env=env, cwd=workdir, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_ansible_ad_hoc_commands_through_the_ssh_config(prod: AwsAccount, aws: Cloud, cli: Cli, tmp_path: Path) -> None:
    web_id = aws.instance_id("web-1")
    access_request = active_request_from_cli(cli, prod, web_id, "ansible run")
    username = access_request.grants.get().username
    config = cli.json("ssh-config")["path"]

    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[passport]\n"
        "web-1 ansible_python_interpreter=/usr/bin/python3\n\n"
        "[passport:vars]\n"
        f"ansible_ssh_common_args='-F {config}'\n"
    )

    whoami = _ansible(cli, tmp_path, inventory, "web-1", "-m", "command", "-a", "whoami")
    assert whoami.returncode == 0, whoami.stdout + whoami.stderr
    assert re.search(rf"^web-1 \| CHANGED \| rc=0 >>\n{re.escape(username)}$", whoami.stdout, re.MULTILINE), (
        whoami.stdout
    )

    ping = _ansible(cli, tmp_path, inventory, "passport", "-m", "ping")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "web-1 | SUCCESS" in ping.stdout and '"ping": "pong"' in ping.stdout

    payload = tmp_path / "motd.txt"
    payload.write_text("deployed by ansible through passport\n")
    copied = _ansible(cli, tmp_path, inventory, "web-1", "-m", "copy", "-a", f"src={payload} dest=motd.txt mode=0640")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert "web-1 | CHANGED" in copied.stdout
    # Read back with plain ssh and the same config: the file is on the host, owned by the short-lived user.
    check = subprocess.run(
        ["ssh", "-F", config, "-o", "BatchMode=yes", "web-1", "stat -c '%U %a' motd.txt && cat motd.txt"],
        env=cli.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert check.stdout == f"{username} 640\n{payload.read_text()}"

    # Once the request ends, the same inventory no longer gets in.
    cli.json("requests", "complete", str(access_request.pk))
    wait_for(lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED, what="done")
    refused = _ansible(cli, tmp_path, inventory, "web-1", "-m", "command", "-a", "whoami")
    assert refused.returncode in (2, 4), refused.stdout + refused.stderr  # failed or unreachable
    assert "CHANGED" not in refused.stdout and "rc=0" not in refused.stdout
