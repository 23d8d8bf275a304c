"""The real stack for the CLI proxy: a daphne serving the portal (WebSockets need ASGI), the real
worker and devcloud, the real `passport` CLI signed in against that daphne, and OpenSSH."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from accounts.models import AwsAccount, User
from requests_app import services as request_services
from requests_app.models import AccessRequest, Grant, Instance, RequestStatus
from tests.cli.conftest import Cli
from tests.factories import make_membership, make_user
from tests.stack import WorkerProcess, daphne_running, wait_for


@pytest.fixture
def daphne(worker: WorkerProcess, tmp_path: Path) -> Iterator[str]:
    env = {
        **worker.env,
        "PASSPORT_VAR_DIR": str(tmp_path / "var"),
        "PASSPORT_RECORDING_CHUNK_SECONDS": "1",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
    }
    with daphne_running(env, tmp_path / "daphne.log") as url:
        yield url


@dataclass
class Proxied:
    """alice's active request on web-1, her CLI signed in to the daphne, and her ssh config."""

    cli: Cli
    alice: User
    approver: User
    access_request: AccessRequest
    grant: Grant
    config: str

    def ssh(self, *args: str, host: str = "web-1", stdin: Any = subprocess.DEVNULL, timeout: float = 60) -> Any:
        return subprocess.run(
            ["ssh", "-F", self.config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", *args[:-1], host, *args[-1:]],
            env=self.cli.env, capture_output=True, timeout=timeout, stdin=stdin, check=False,
        )  # fmt: skip


def active_request(account: AwsAccount, requester: User, approver: User, names: list[str]) -> AccessRequest:
    instances = [Instance.objects.get(account=account, name=name) for name in names]
    access_request = request_services.access_request_create(
        requester=requester, account=account, instances=instances, reason="proxy test"
    )
    request_services.access_request_approve(access_request=access_request, approver=approver)
    wait_for(lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE, what="active")
    access_request.refresh_from_db()
    return access_request


def signed_in_cli(daphne: str, tmp_path: Path, user: User, name: str = "workstation") -> Cli:
    config = tmp_path / name / "config"
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(config),
        "HOME": str(tmp_path / name),
        "PASSPORT_URL": daphne,
        "BROWSER": "true",
    }
    env.pop("PASSPORT_CONFIG_DIR", None)
    env.pop("SSH_AUTH_SOCK", None)
    cli = Cli(env=env, config_dir=config / "passport")
    login = cli.login(user)
    assert login.returncode == 0, login.stderr
    return cli


@pytest.fixture
def proxied(prod: AwsAccount, daphne: str, tmp_path: Path) -> Proxied:
    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, alice, approver, ["web-1"])
    cli = signed_in_cli(daphne, tmp_path, alice)
    config = cli.json("ssh-config")["path"]
    grant = Grant.objects.select_related("instance", "request").get(request=access_request)
    return Proxied(cli=cli, alice=alice, approver=approver, access_request=access_request, grant=grant, config=config)
