"""The many-hosts deployment of tests/integration/test_many_hosts.py: its processes (two web
processes, two workers and schedulers, a Redis of its own), the people who use it over HTTP and the
browser's terminal WebSocket."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from accounts.authentication import hash_token
from accounts.models import ApiToken, AwsAccount, User
from audit.models import LogbookEntry
from passport_portal.scheduler import ALWAYS_SENT
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from tests.factories import make_membership, make_user
from tests.stack import AWS_ENV, ROOT, Cloud, WorkerProcess, free_port, wait_for
from tests.terminal.helpers import session_cookie
from tests.terminal.storage_helpers import use_s3_recordings
from tests.terminal.test_web_process_kill import _start_daphne

HOST = "web-1"  # a real local host of devcloud's "Acme Production"
SLOW_HOST = "db-1"  # its agent is made unreachable to hold provisioning open
SENDING = "Sending due task"


class RedisServer:
    """A redis-server of this module's own, on a port of its own: killed and started again at will."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.directory / "redis.log").open("a")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self._answers, timeout=20, what="redis-server to answer")

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: every client's connection drops at once
            self.process.wait(timeout=10)


@dataclass
class Web:
    """One web host: a daphne process with its own PASSPORT_VAR_DIR (so its own MEDIA_ROOT)."""

    directory: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class Deployment:
    bucket: str
    redis: RedisServer
    workers: list[WorkerProcess]
    web_a: Web
    web_b: Web
    started: float = field(default_factory=time.monotonic)

    def web_start(self, web: Web) -> None:
        web.directory.mkdir(parents=True, exist_ok=True)
        web.process, web.port = _start_daphne(self.workers[0], web.directory, self.bucket)

    def manage(self, web: Web, *args: str) -> str:
        """``manage.py`` run as on ``web``'s host (its disk, the shared database and bucket): its output."""
        env = {
            **self.workers[0].env,
            "PASSPORT_VAR_DIR": str(web.directory / "web-1"),
            "PASSPORT_RECORDINGS_BUCKET": self.bucket,
        }
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        return done.stdout

    def cast_files(self) -> list[Path]:
        return [path for web in (self.web_a, self.web_b) for path in web.directory.rglob("*.cast")]


@pytest.fixture(scope="module")
def many_hosts(cloud: Cloud, worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("many-hosts")
    bucket = f"recordings-{secrets.token_hex(6)}"
    s3 = boto3.client("s3", endpoint_url=cloud.endpoint_url, region_name=AWS_ENV["AWS_REGION"])
    # As ``manage.py ensure_recordings_bucket`` makes it (the test settings' retention), before anything is in it.
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {
                "DefaultRetention": {
                    "Mode": django_settings.PASSPORT_RECORDINGS_RETENTION_MODE,
                    "Days": django_settings.PASSPORT_RECORDINGS_RETENTION_DAYS,
                }
            },
        },
    )
    worker.stop()  # the suite's worker and beat: see the module's docstring
    server = RedisServer(root)
    server.start()
    env = {
        **worker.env,
        "REDIS_URL": server.url,
        "PASSPORT_RECORDINGS_BUCKET": bucket,
        "PASSPORT_RECORDING_CHUNK_SECONDS": "1",
        "PASSPORT_RECORDING_STALE_SECONDS": "6",
        "PASSPORT_RECORDING_SWEEP_SECONDS": "2",
        "PASSPORT_SCHEDULER_STANDBY_SECONDS": "2",
        "PASSPORT_SCHEDULER_HEARTBEAT_SECONDS": "5",
    }
    workers = []
    for name in ("host-1", "host-2"):
        directory = root / name
        directory.mkdir()
        workers.append(WorkerProcess(env, directory, name=f"passport-{name}"))
    deployed = Deployment(bucket, server, workers, Web(root / "web-a"), Web(root / "web-b"))
    try:
        for process in workers:
            process.start_scheduler()
            process.start()
        deployed.web_start(deployed.web_a)
        deployed.web_start(deployed.web_b)
        yield deployed
    finally:
        deployed.web_a.kill()
        deployed.web_b.kill()
        for process in workers:
            process.stop()
        server.kill()
        worker.start_scheduler()
        worker.start()


# --- people and HTTP -----------------------------------------------------------------------------


@dataclass
class Person:
    user: User
    token: str
    cookie: str

    def api(self, web: Web, path: str, payload: dict[str, Any] | None = None) -> requests.Response:
        return requests.post(
            f"{web.url}/api/{path}", json=payload or {}, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def approve(self, web: Web, request_id: int) -> requests.Response:
        """As the approvals page does it: the browser's session and its CSRF token (not open to a CLI token)."""
        csrf = secrets.token_hex(16)
        return requests.post(
            f"{web.url}/api/requests/{request_id}/approve/",
            json={},
            headers={"Cookie": f"{self.cookie}; csrftoken={csrf}", "X-CSRFToken": csrf},
            timeout=30,
        )

    def get(self, web: Web, path: str) -> requests.Response:
        return requests.get(f"{web.url}{path}", headers={"Cookie": self.cookie}, timeout=30)


def person(username: str, prod: AwsAccount, *, can_approve: bool = False, is_auditor: bool = False) -> Person:
    user = make_user(username, is_auditor=is_auditor)
    if not is_auditor:
        make_membership(user, prod, "admin", can_approve=can_approve)
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=user, name="test", token_hash=hash_token(raw), expires_at=timezone.now() + timedelta(hours=1)
    )
    return Person(user, raw, session_cookie(user))  # signed in: the session lives in the shared database


@pytest.fixture
def many_hosts_people(prod: AwsAccount, many_hosts: Deployment, settings: Any) -> tuple[Person, Person]:
    use_s3_recordings(settings, settings.AWS_ENDPOINT_URL, many_hosts.bucket)  # this process reads it too
    return person("hana", prod, can_approve=False), person("ravi", prod, can_approve=True)


def create(requester: Person, web: Web, prod: AwsAccount, cloud: Cloud, host: str = HOST) -> int:
    response = requester.api(
        web, "requests/", {"account": prod.account_id, "instances": [cloud.instance_id(host)], "reason": "Many hosts"}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def request_status(request_id: int) -> str:
    return str(AccessRequest.objects.get(pk=request_id).status)


def request_active(d: Deployment, prod: AwsAccount, cloud: Cloud, requester: Person, approver: Person) -> Grant:
    """Created on web A, approved on web B, provisioned by whichever worker."""
    request_id = create(requester, d.web_a, prod, cloud)
    assert approver.approve(d.web_b, request_id).status_code == 200
    wait_for(lambda: request_status(request_id) == RequestStatus.ACTIVE, timeout=60, what="the request active")
    return Grant.objects.get(request_id=request_id)


def removed(request_id: int) -> None:
    wait_for(
        lambda: not Grant.objects.filter(request_id=request_id).exclude(status=GrantStatus.REMOVED).exists(),
        timeout=60,
        what="the grants removed",
    )


# --- the browser's terminal ----------------------------------------------------------------------


class Terminal:
    """The terminal page's WebSocket, as the browser opens it: the ticket from the page, the cookie, the Origin."""

    def __init__(self, person: Person, web: Web, grant: Grant) -> None:
        page = person.get(web, f"/terminal/{grant.pk}/")
        assert page.status_code == 200, page.status_code
        match = re.search(r'data-ticket="([^"]+)"', page.text)
        assert match, "no ticket on the terminal page"
        self.ws: ClientConnection = connect(
            f"ws://127.0.0.1:{web.port}/ws/terminal/{grant.pk}/?ticket={match.group(1)}",
            additional_headers={"Cookie": person.cookie, "Origin": web.url},
            open_timeout=20,
        )
        self.output = b""
        self.envelopes: list[dict[str, Any]] = []
        self.closed = False

    def until(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                raise AssertionError(f"no {what} within {timeout} s: {self.envelopes} {self.output[-300:]!r}")
            try:
                message = self.ws.recv(timeout=remaining)
            except TimeoutError:
                continue
            except ConnectionClosed:
                self.closed = True
                continue
            if isinstance(message, bytes):
                self.output += message
            else:
                self.envelopes.append(json.loads(message))

    def ready_with_echo(self, word: str) -> None:
        self.until(lambda t: t.envelope("ready"), 60, "ready")
        self.ws.send(json.dumps({"v": 1, "type": "input", "data": f"echo {word}$((6*7))\r"}))
        self.until(lambda t: f"{word}42".encode() in t.output, 20, "the echo")

    def envelope(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in self.envelopes if e.get("type") == kind), None)

    def wait_closed(self, timeout: float) -> None:
        self.until(lambda t: t.closed, timeout, "the close")

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    def __enter__(self) -> Terminal:
        self.ws.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ws.__exit__(None, None, None)  # closes the socket


def recording_views(request_id: int) -> list[dict[str, Any]]:
    return [e.detail for e in LogbookEntry.objects.filter(action="recording.viewed", request_id=request_id)]


def sent(worker: WorkerProcess) -> int:
    """What the holder of the lock sends (every beat sends the Logbook's checkpoint: ALWAYS_SENT)."""
    log = worker.log_dir / "beat.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for line in lines if SENDING in line and not any(f" {name} (" in line for name in ALWAYS_SENT))
