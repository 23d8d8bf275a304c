"""Run the real `passport` CLI as a subprocess against a live portal (pytest-django's live_server)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import AwsAccount, User
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus
from tests.factories import make_membership, make_user
from tests.stack import Cloud, WorkerProcess, daphne_running, synced_account, wait_for

ROOT = Path(__file__).resolve().parents[2]
CODE_RE = re.compile(r"confirm the code ([A-Z0-9]{4}-[A-Z0-9]{4})")

# THE one switch for how the CLI stacks' account (``prod`` below) reaches its instances:
# "direct" (the CLI speaks the Session Manager data channel itself, not recorded) or "record"
# (through the portal's recording SSH proxy, the host CA pinned in the CLI's known_hosts).
# PASSPORT_CLI_TEST_SESSIONS overrides it for one run.
CLI_TEST_SESSIONS = os.environ.get("PASSPORT_CLI_TEST_SESSIONS", "record")


@dataclass
class Cli:
    env: dict[str, str]
    config_dir: Path

    def run(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "passport_cli", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json", check=True).stdout)

    def login(self, user: User) -> subprocess.CompletedProcess[str]:
        """`passport auth login`, confirming its code in the portal as ``user`` (Django's test client)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "passport_cli", "auth", "login", "--no-browser", "--timeout", "60"],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stderr is not None
        seen = ""
        deadline = time.monotonic() + 30
        while (match := CODE_RE.search(seen)) is None:
            line = process.stderr.readline()
            if not line and (process.poll() is not None or time.monotonic() > deadline):
                process.kill()
                pytest.fail(f"no user code shown: {seen}")
            seen += line
        code = match.group(1)
        browser = Client()
        browser.force_login(user)
        page = browser.get("/cli/device/", {"code": code})
        assert page.status_code == 200 and code in page.content.decode()
        confirmed = browser.post("/cli/device/", {"user_code": code})
        assert confirmed.status_code == 200, confirmed.content.decode()
        out, err = process.communicate(timeout=60)
        return subprocess.CompletedProcess(process.args, process.returncode, out, seen + err)


def active_request_from_cli(cli: Cli, account: AwsAccount, instance: str, reason: str) -> AccessRequest:
    """alice (Admin of ``account``) signs in to ``cli`` and asks there for ``instance`` (an id or a
    name, as `passport requests create -i` takes it); an approver approves and the worker makes it active."""
    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, account, "admin")
    make_membership(approver, account, "admin", can_approve=True)
    assert cli.login(alice).returncode == 0
    created = cli.json("requests", "create", "--account", account.account_id, "-i", instance, "--reason", reason)
    access_request = AccessRequest.objects.get(pk=created["id"])
    services.access_request_approve(access_request=access_request, approver=approver)
    wait_for(lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE, what="active")
    return access_request


def stop_cli(process: subprocess.Popen[str]) -> None:
    """End a `passport` started by a test: SIGTERM (not SIGINT: a runner may start the tests with SIGINT
    ignored, and so the CLI too), then SIGKILL if it is still running 30 s later."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def forwarding(cli: Cli, instance: str, remote: int) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`passport forward INSTANCE 0:REMOTE` running for the block (``stop_cli`` after it); yields it and
    the local port it listens on."""
    process = subprocess.Popen(
        [sys.executable, "-m", "passport_cli", "forward", instance, f"0:{remote}"],
        env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("127.0.0.1:"), (
            line,
            process.stderr.read() if process.stderr and process.poll() is not None else "",
        )
        yield process, int(line.removeprefix("127.0.0.1:"))
    finally:
        stop_cli(process)


@pytest.fixture
def prod(aws: Cloud, live_db: None) -> AwsAccount:
    """devcloud's "Acme Production", synced (web-1 and db-1 are real local hosts), its CLI
    sessions set by ``CLI_TEST_SESSIONS``."""
    account: AwsAccount = synced_account(aws, "Acme Production")
    AwsAccount.objects.filter(pk=account.pk).update(cli_sessions=CLI_TEST_SESSIONS)
    account.refresh_from_db()
    return account


@pytest.fixture
def asgi_portal(worker: WorkerProcess, tmp_path: Path) -> Iterator[str]:
    """The portal under daphne (ASGI, as deployed): its WebSockets too, which `passport proxy` opens first."""
    with daphne_running({**worker.env, "PASSPORT_VAR_DIR": str(tmp_path / "var")}, tmp_path / "daphne.log") as url:
        yield url


@pytest.fixture
def portal_url(request: pytest.FixtureRequest) -> str:
    """Where the CLI finds the portal: pytest-django's live_server (WSGI, in this process), or the
    ASGI portal for a module that sets ``CLI_PORTAL = "asgi"`` (its ssh goes through `passport proxy`)."""
    if getattr(request.module, "CLI_PORTAL", "wsgi") == "asgi":
        return str(request.getfixturevalue("asgi_portal"))
    return str(request.getfixturevalue("live_server").url)


@pytest.fixture
def make_cli(portal_url: str, tmp_path: Path) -> Callable[[str], Cli]:
    def make(name: str = "workstation") -> Cli:
        config = tmp_path / name / "config"
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(config),
            "HOME": str(tmp_path / name),
            "PASSPORT_URL": portal_url,
            "BROWSER": "true",
        }
        env.pop("PASSPORT_CONFIG_DIR", None)
        return Cli(env=env, config_dir=config / "passport")

    return make


@pytest.fixture
def cli(make_cli: Callable[[str], Cli]) -> Cli:
    return make_cli("workstation")
