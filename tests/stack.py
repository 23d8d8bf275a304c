"""The real stack for integration and browser tests: devcloud (moto's server + local hosts), Redis,
PostgreSQL and a Celery worker process with its scheduler, all started here.

The worker is a separate process that reads the test database, so these tests use
``transactional_db`` (committed data) rather than the per-test transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from devcloud.seed import seed_demo
from devcloud.server import DevCloud

ROOT = Path(__file__).resolve().parents[1]
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "devcloud",
    "AWS_SECRET_ACCESS_KEY": "devcloud",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass
class Cloud:
    devcloud: DevCloud
    manifest: dict[str, Any]

    @property
    def endpoint_url(self) -> str:
        return self.devcloud.endpoint_url

    def instance_id(self, name: str) -> str:
        return next(item["id"] for item in self.manifest["instances"] if item["name"] == name)

    def host_users(self, name: str) -> set[str]:
        """The accounts in a local host's own /etc/passwd."""
        passwd = self.devcloud.runtime.hosts.host_dir(self.instance_id(name)) / "etc" / "passwd"
        if not passwd.exists():  # the host has not booted yet: it has run nothing
            return set()
        return {line.split(":", 1)[0] for line in passwd.read_text().splitlines() if line}

    def run_in_host(self, name: str, command: list[str]) -> subprocess.CompletedProcess[str]:
        process = self.devcloud.runtime.hosts.run(
            self.instance_id(name), command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        out, err = process.communicate(timeout=30)
        return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    os.environ.update(AWS_ENV)
    state_dir = tmp_path_factory.mktemp("devcloud")
    devcloud = DevCloud(state_dir=state_dir).start()
    try:
        yield Cloud(devcloud=devcloud, manifest=seed_demo(devcloud.endpoint_url, state_dir))
    finally:
        devcloud.stop()


@pytest.fixture
def aws(cloud: Cloud, settings: Any) -> Cloud:
    """Point this process's fleet gateway at devcloud."""
    settings.AWS_ENDPOINT_URL = cloud.endpoint_url
    return cloud


def _redis_url() -> str:
    url = os.environ.get("REDIS_URL") or settings.REDIS_URL
    if not url:
        pytest.fail("Integration tests need REDIS_URL (scripts/test sets it).")
    return url


class WorkerProcess:
    """A real Celery worker process and its beat scheduler; the worker can be killed and restarted."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "passport-test") -> None:
        self.env = env
        self.log_dir = log_dir
        self.name = name  # the Celery hostname's prefix: several workers side by side need their own
        self.log_path = log_dir / "worker.log"
        self.process: subprocess.Popen[str] | None = None
        self.scheduler: subprocess.Popen[str] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "passport_portal", "worker",
                    "--pool", "threads", "--concurrency", "4", "--loglevel", "INFO", "--queues", "celery,revocation",
                    "--without-gossip", "--without-mingle", "--hostname", f"{self.name}-{self.starts}@%h",
                ],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while "ready." not in self.log_path.read_text()[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"The Celery worker did not start:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.1)

    def start_scheduler(self) -> None:
        """The beat scheduler, as its own process (as in production), so killing the worker leaves it be."""
        with (self.log_dir / "beat.log").open("a") as log:
            self.scheduler = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "passport_portal", "beat", "--loglevel", "INFO",
                    "--schedule", str(self.log_dir / "beat-schedule"),
                ],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL, the way a crash or an OOM kill ends a worker: no cleanup, no acks."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        for process in (self.process, self.scheduler):
            if process is not None:
                stop_process(process, timeout=20)


def stop_process(process: subprocess.Popen[Any], *, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds; nothing if it has ended."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_daphne(env: dict[str, str], log_path: Path, port: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    """daphne serving the portal as deployed (``passport_portal.asgi:application``: WebSockets need
    ASGI, pytest-django's live_server is WSGI) on loopback ``port`` (0: a free one), its output in
    ``log_path``. Returns once it accepts connections; fails the test with its log if it does not."""
    port = port or free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "passport_portal.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"daphne did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)


@contextlib.contextmanager
def daphne_running(env: dict[str, str], log_path: Path, port: int = 0) -> Iterator[str]:
    """``start_daphne`` for the ``with`` block, which gets its base URL; stopped after it, and the
    tail of its log shown (pytest prints it when a test failed)."""
    process, port = start_daphne(env, log_path, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
        sys.stderr.write(f"\n--- daphne log (tail) ---\n{log_path.read_text()[-4000:]}\n")


@pytest.fixture(scope="session")
def worker(
    cloud: Cloud, django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """The worker process, on Redis and the test database, with short leases so lost work is found fast."""
    import redis

    redis_url = _redis_url()
    redis.Redis.from_url(redis_url).flushdb()
    db = connection.settings_dict
    env = {
        **os.environ,
        **AWS_ENV,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis_url,
        "AWS_ENDPOINT_URL": cloud.endpoint_url,
        "PASSPORT_ENV": "test",
        "PASSPORT_RUN_COMMAND_POLL_MS": "200",
        "PASSPORT_RUN_COMMAND_TIMEOUT": "20",
        "PASSPORT_LEASE_SECONDS": "6",
        "PASSPORT_SWEEP_SECONDS": "3",
        "PASSPORT_SWEEP_GRACE_SECONDS": "3",
        "PYTHONUNBUFFERED": "1",
        "PASSPORT_CELERY_LOG_LEVEL": "INFO",
    }
    process = WorkerProcess(env, tmp_path_factory.mktemp("worker"))
    try:
        process.start_scheduler()
        process.start()
        yield process
    finally:
        process.stop()
        # Shown by pytest when a test failed: what the worker said.
        sys.stderr.write(f"\n--- Celery worker log (tail) ---\n{process.log_path.read_text()[-3000:]}\n")


@pytest.fixture
def live_db(transactional_db: None) -> Iterator[None]:
    """Committed data the worker process can see; the Logbook may be truncated between tests only."""
    if connection.vendor != "postgresql":
        pytest.fail("Integration tests run on PostgreSQL: set DATABASE_URL (scripts/test does).")
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET passport.logbook_truncate = 'allow'")


def wait_for(predicate: Callable[[], Any], *, timeout: float = 60, what: str = "condition") -> Any:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


def ssm_session_active(aws: Cloud, session_id: str) -> bool:
    """Whether devcloud's Session Manager holds this session open."""
    session = aws.devcloud.runtime.sessions.get(session_id)
    assert session is not None, session_id
    return session.active


def account_admin_client(cloud: Cloud, account_id: str, service: str, *, region: str | None = None) -> Any:
    """A boto3 client of devcloud's ``service`` as the account's administrator (its ``admin_role_arn``):
    for what the portal's own role may not do, as its policy in AWS does not allow it. ``region``:
    the client's region (the environment's by default)."""
    import boto3

    base = boto3.Session(
        region_name=region or AWS_ENV["AWS_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    role = next(item["admin_role_arn"] for item in cloud.manifest["accounts"] if item["id"] == account_id)
    credentials = base.client("sts", endpoint_url=cloud.endpoint_url).assume_role(
        RoleArn=role, RoleSessionName="tests-admin"
    )["Credentials"]
    return base.client(
        service,
        endpoint_url=cloud.endpoint_url,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def tag_as_account_admin(cloud: Cloud, account_id: str, instance_name: str, tags: dict[str, str]) -> None:
    """Tag a devcloud instance as the account's administrator would: the portal's own role may not tag."""
    account_admin_client(cloud, account_id, "ec2").create_tags(
        Resources=[cloud.instance_id(instance_name)], Tags=[{"Key": key, "Value": value} for key, value in tags.items()]
    )


@contextlib.contextmanager
def portal_role_denied(cloud: Cloud, account_id: str, action: str, resource: str = "*") -> Iterator[None]:
    """The account's administrator denies the portal's role ``action`` on ``resource`` (an explicit
    Deny, which AWS, and devcloud's policy check, let win over the role's Allow): the call fails
    as AWS fails it. Taken back after the block."""
    iam = account_admin_client(cloud, account_id, "iam")
    item = next(account for account in cloud.manifest["accounts"] if account["id"] == account_id)
    role = item["role_arn"].rsplit("/", 1)[-1]
    deny = {"Effect": "Deny", "Action": action, "Resource": resource}
    iam.put_role_policy(
        RoleName=role,
        PolicyName="TestsPortalDenied",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [deny]}),
    )
    try:
        yield
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="TestsPortalDenied")


@contextlib.contextmanager
def agent_gone(cloud: Cloud, account_id: str, instance_name: str) -> Iterator[None]:
    """The instance's SSM agent lost (devcloud's ``devcloud:ping-status`` tag) while the portal's
    inventory still says Online, as between two syncs; back Online after the block."""
    tag_as_account_admin(cloud, account_id, instance_name, {"devcloud:ping-status": "ConnectionLost"})
    try:
        yield
    finally:
        tag_as_account_admin(cloud, account_id, instance_name, {"devcloud:ping-status": "Online"})


def open_forward_ports(account: Any, ports: list[int]) -> None:
    """What an admin's change of an account's extra forwarding ports does, for a test with a
    worker: the ports stored, then ``bind_grant_keys`` (which the admin queues) rewrites the
    authorized_keys lines of the account's live grants, whose permitopen sshd enforces; waited for."""
    from accounts.models import AwsAccount
    from requests_app.models import Grant, GrantStatus
    from workers import tasks

    AwsAccount.objects.filter(pk=account.pk).update(extra_forward_ports=ports)
    tasks.bind_grant_keys.delay()
    live = Grant.objects.filter(request__account_id=account.pk, status=GrantStatus.READY, instance__platform="linux")
    wait_for(lambda: not live.exclude(key_forward_ports=ports).exists(), what="the live grants' lines rewritten")


def direct_active_request(
    prod: Any, requester: Any, approver: Any, names: Sequence[str] = ("web-1",), *, admin_rights: bool = False
) -> Any:
    """``requester``'s request for the instances ``names`` of ``prod``, approved by ``approver`` and
    provisioned by the worker: active, every grant ready. The account's CLI sessions are made
    direct first: only there does the person's own key log in to sshd."""
    from accounts.models import AwsAccount
    from requests_app import services
    from requests_app.models import AccessRequest, GrantStatus, Instance, RequestStatus

    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    instances = list(Instance.objects.filter(account=prod, name__in=names))
    access_request = services.access_request_create(
        requester=requester, account=prod, instances=instances, reason="direct login", admin_rights=admin_rights
    )
    services.access_request_approve(access_request=access_request, approver=approver)
    wait_for(lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE, what="active")
    wait_for(
        lambda: not access_request.grants.exclude(status=GrantStatus.READY).exists(),
        what="every instance of the request ready",
    )
    access_request.refresh_from_db()
    return access_request


# An sshd that takes no Ed25519 key, neither as a user key nor as a CA's signature: RHEL in FIPS
# mode, or an admin's PubkeyAcceptedAlgorithms. RSA with SHA-2 only.
SSHD_WITHOUT_ED25519 = (
    "PubkeyAcceptedAlgorithms rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,"
    "rsa-sha2-512,rsa-sha2-256\nCASignatureAlgorithms rsa-sha2-512,rsa-sha2-256\n"
)


@contextlib.contextmanager
def host_sshd_options(cloud: Cloud, name: str, options: str) -> Iterator[Any]:
    """The local host ``name``'s own sshd restarted (on its port) with ``options`` in a drop-in of its
    /etc/ssh/sshd_config.d, as an admin of the server would set them; put back as it was afterwards.
    Yields the host's sshd (``devcloud.sshd.HostSshd``: its log)."""
    hosts, instance_id = cloud.devcloud.runtime.hosts, cloud.instance_id(name)
    drop_in = hosts.host_dir(instance_id) / "etc" / "ssh" / "sshd_config.d" / "passport-test.conf"

    def restart() -> Any:
        hosts.sshd(instance_id).stop()
        return hosts.sshd(instance_id)

    hosts.sshd(instance_id)  # the host and its /etc exist from here on
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(options)
    try:
        yield restart()
    finally:
        drop_in.unlink(missing_ok=True)
        restart()


def synced_account(cloud: Cloud, name: str) -> Any:
    """The devcloud demo account ``name`` as an AwsAccount of the portal, its inventory synced."""
    from accounts.models import AwsAccount
    from requests_app.services import inventory_sync

    item = next(account for account in cloud.manifest["accounts"] if account["name"] == name)
    account = AwsAccount.objects.create(
        account_id=item["id"], name=item["name"], role_arn=item["role_arn"], regions=item["regions"]
    )
    assert not inventory_sync(account=account).errors
    return account


@pytest.fixture
def prod(aws: Cloud, live_db: None) -> Any:
    """devcloud's "Acme Production", synced: web-1 and db-1 are real local hosts."""
    return synced_account(aws, "Acme Production")
