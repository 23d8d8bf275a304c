"""What the terminal benchmarks share: the stack they run against; not a benchmark itself.

Used by terminal_throughput.py, terminal_latency.py, terminal_concurrency.py, live_feed_lag.py,
cli_proxy.py and terminal_recording_storage.py. ``Stack`` starts, on this machine, and stops again on exit:

- devcloud as its own process (``python -m devcloud serve --seed demo``): moto's server, the
  agent side of the Session Manager data channel, and the local host ``web-1`` with its own
  OpenSSH sshd on a loopback port;
- the PostgreSQL database ``passport_bench_term`` (dropped and created again) and Redis db 12
  (flushed): the portal's data and its channel layer; ``PASSPORT_BENCH_DB`` and
  ``PASSPORT_BENCH_REDIS_URL`` name others, so that two runs on one machine stay apart (a
  benchmark may also set ``DB_NAME`` and ``REDIS_URL`` here before it starts one: cli_proxy.py);
- a Celery worker, only until the benchmark's grant is ready (provisioning is not measured);
- with ``web=True``, daphne serving ``passport_portal.asgi:application``: the web process.

The shells the benchmarks compare on it, and the screen that times them, are in _terminal_shells.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Both are dropped / flushed at start; overridable so that two benchmark runs can share the machine.
DB_NAME = os.environ.get("PASSPORT_BENCH_DB") or "passport_bench_term"
REDIS_URL = os.environ.get("PASSPORT_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/12"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
PASSWORD = "bench-terminal-password"  # noqa: S105 - a throwaway account in a throwaway database
LOGIN = "bench-alice"
APPROVER = "bench-approver"  # approves the grant; may watch bench-alice's sessions (live_feed_lag.py)
COLS, ROWS = 80, 24
READ_SIZE = 8192  # what terminal.bridge reads at a time, so every path hands over alike


def fail(message: str) -> SystemExit:
    return SystemExit(f"{Path(sys.argv[0]).name}: {message}")


def require_environment(*, web: bool) -> None:
    """Exit with a message when something the stack needs is missing."""
    if os.geteuid() != 0:
        raise fail("devcloud's local hosts are mount namespaces: run as root.")
    for tool in ("/usr/sbin/sshd", "/usr/bin/ssh-keygen", "unshare"):
        if not shutil.which(tool):
            raise fail(f"{tool} is missing (scripts/test installs OpenSSH).")
    modules = ["asyncssh", "websockets", "psycopg", "redis", "requests"] + (["daphne"] if web else [])
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            raise fail(
                f"the Python package {module} is missing: run with .venv/bin/python after scripts/setup."
            ) from None
    try:
        import psycopg

        psycopg.connect(dbname="postgres", connect_timeout=5, **PG).close()
    except Exception as exc:
        raise fail(
            f"PostgreSQL is not reachable on 127.0.0.1:5432 as postgres ({exc}); scripts/services starts it."
        ) from None
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except Exception as exc:
        raise fail(f"Redis is not reachable at {REDIS_URL} ({exc}); scripts/services starts it.") from None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def web_unit_malloc_environment() -> dict[str, str]:
    """The malloc tunables (``MALLOC_*``) deploy/systemd/passport-web@.service gives the web
    process, so that daphne's memory here is that of daphne as deployed."""
    unit = ROOT / "deploy" / "systemd" / "passport-web@.service"
    found = re.findall(r"^Environment=(MALLOC_[A-Z_]+)=(\S+)$", unit.read_text(), flags=re.MULTILINE)
    return dict(found)


def rss_kib(pid: int) -> int:
    """Resident memory of one process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _stop(process: subprocess.Popen[Any] | None, timeout: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _recreate_database() -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))


@dataclass
class Target:
    """The benchmark's ready grant and where its host's sshd listens."""

    grant_id: int
    user_id: int
    username: str  # the short-lived OS user on the host
    instance_id: str
    sshd_port: int


class Stack:
    """devcloud, the database, a provisioned grant and (``web``) a daphne process; see the module doc."""

    def __init__(
        self, *, web: bool, verbose: bool = True, daphne_options: tuple[str, ...] = (), heap_dir: Path | None = None
    ) -> None:
        self.web = web
        self.daphne_options = daphne_options  # more command-line options for daphne
        self.heap_dir = heap_dir  # daphne through _heap_daphne.py, its snapshots here (terminal_concurrency --heap)
        self.verbose = verbose
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-terminal-"))
        self.devcloud: subprocess.Popen[str] | None = None
        self.daphne: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.target: Target | None = None

    @property
    def devcloud_pid(self) -> int:
        assert self.devcloud is not None
        return self.devcloud.pid

    def say(self, message: str) -> None:
        if self.verbose:
            print(f"[setup] {message}", file=sys.stderr, flush=True)

    # --- starting ---------------------------------------------------------------------
    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        _stop(self.daphne)
        _stop(self.devcloud, timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _start(self) -> None:
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "passport_portal.settings",
                "PASSPORT_ENV": "test",
                "PASSPORT_DEBUG": "false",  # as in production: no per-query bookkeeping
                "PASSPORT_LOG_LEVEL": "WARNING",
                "PASSPORT_VAR_DIR": str(self.tmp / "var"),  # recordings go to var/media
                "PASSPORT_TERMINAL_IDLE_SECONDS": "3600",
                # One person opens hundreds of terminals here: the per-person caps would refuse them.
                "PASSPORT_MAX_SESSIONS_PER_GRANT": "100000",
                "PASSPORT_MAX_SESSIONS_PER_PERSON": "100000",
                "PASSPORT_RUN_COMMAND_POLL_MS": "100",
                "DATABASE_URL": f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{DB_NAME}",
                "REDIS_URL": REDIS_URL,
                "AWS_ACCESS_KEY_ID": "devcloud",
                "AWS_SECRET_ACCESS_KEY": "devcloud",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        _recreate_database()
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        manifest = self._start_devcloud()
        import django

        django.setup()
        from django.core.management import call_command

        self.say(f"migrating {DB_NAME}")
        call_command("migrate", verbosity=0)
        self.target = self._provision(manifest)
        if self.web:
            self._start_daphne()

    def _start_devcloud(self) -> dict[str, Any]:
        self.say("starting devcloud")
        state = self.tmp / "devcloud"
        self.devcloud = subprocess.Popen(
            # Sessions idle for 60 minutes, as the portal's own idle limit here (PASSPORT_TERMINAL_IDLE_SECONDS):
            # with AWS's 20, the first terminals of a 1,000-terminal run ended while the last were opened.
            [sys.executable, "-m", "devcloud", "serve", "--port", "0", "--state-dir", str(state), "--seed", "demo",
             "--idle-timeout", "60"],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=(self.tmp / "devcloud.log").open("w"),
            text=True,
        )  # fmt: skip
        assert self.devcloud.stdout is not None
        # devcloud prints its endpoint once everything, the seed included, is ready.
        ready, _, _ = select.select([self.devcloud.stdout], [], [], 180)
        line = self.devcloud.stdout.readline().strip() if ready else ""
        if not line.startswith("http"):
            log = (self.tmp / "devcloud.log").read_text()[-3000:]
            raise fail(f"devcloud did not start:\n{log}")
        os.environ["AWS_ENDPOINT_URL"] = line
        return dict(json.loads((state / "manifest.json").read_text()))

    def _provision(self, manifest: dict[str, Any]) -> Target:
        from accounts.models import AwsAccount, Membership, User
        from requests_app import services
        from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
        from sshca.services import ca_keys_ensure

        item = next(a for a in manifest["accounts"] if a["name"] == "Acme Production")
        # Direct CLI sessions: start_session below opens SSH itself (via "benchmark"), which a
        # recorded account refuses to anyone but the portal's recording paths.
        account = AwsAccount.objects.create(
            account_id=item["id"],
            name=item["name"],
            role_arn=item["role_arn"],
            regions=item["regions"],
            cli_sessions=AwsAccount.CliSessions.DIRECT,
        )
        services.inventory_sync(account=account)
        ca_keys_ensure()
        web = Instance.objects.get(account=account, name="web-1")
        sshd = next(i["ssh"] for i in manifest["instances"] if i["id"] == web.instance_id)
        person = User.objects.create_user(LOGIN, email=f"{LOGIN}@example.test", password=PASSWORD)
        approver = User.objects.create_user(APPROVER, email=f"{APPROVER}@example.test")
        for user, can_approve in ((person, False), (approver, True)):
            Membership.objects.create(
                user=user,
                account=account,
                role="admin",
                can_approve=can_approve,
                principal_arn=f"arn:aws:iam::{account.account_id}:user/{user.username}",
            )
        access_request = services.access_request_create(
            requester=person, account=account, instances=[web], reason="terminal benchmark"
        )
        self.say("provisioning the grant through a Celery worker")
        log_path = self.tmp / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "passport_portal", "worker", "--pool", "threads",
             "--concurrency", "2", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=dict(os.environ), stdout=log_path.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            services.access_request_approve(access_request=access_request, approver=approver)
            deadline = time.monotonic() + 180
            while True:
                grant = Grant.objects.get(request=access_request)
                status = AccessRequest.objects.get(pk=access_request.pk).status
                if grant.status == GrantStatus.READY and status == RequestStatus.ACTIVE:
                    break
                if grant.status == GrantStatus.FAILED or worker.poll() is not None or time.monotonic() > deadline:
                    raise fail(
                        f"the grant did not become ready (grant {grant.status}, request {status}, "
                        f"{grant.last_error!r}):\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(0.2)
        finally:
            _stop(worker)
        return Target(
            grant_id=grant.pk,
            user_id=person.pk,
            username=grant.username,
            instance_id=web.instance_id,
            sshd_port=int(sshd["port"]),
        )

    def _start_daphne(self) -> None:
        port = free_port()
        self.say(f"starting daphne on 127.0.0.1:{port}")
        daphne = ["-m", "daphne"] if self.heap_dir is None else [str(Path(__file__).with_name("_heap_daphne.py"))]
        heap = {} if self.heap_dir is None else {"PASSPORT_BENCH_HEAP_DIR": str(self.heap_dir)}
        self.daphne = subprocess.Popen(
            [sys.executable, *daphne, "-b", "127.0.0.1", "-p", str(port), "-v", "0",
             *self.daphne_options, "passport_portal.asgi:application"],
            cwd=ROOT, env={**os.environ, **web_unit_malloc_environment(), **heap},
            stdout=(self.tmp / "daphne.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if self.daphne.poll() is not None or time.monotonic() > deadline:
                raise fail(f"daphne did not start:\n{self.daphne_log()}")
            time.sleep(0.2)
        self.base_url = f"http://127.0.0.1:{port}"

    def daphne_log(self) -> str:
        """The first error daphne logged (and what follows), else the end of its log."""
        path = self.tmp / "daphne.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        first = min((i for i in (text.find("Traceback"), text.find("ERROR")) if i >= 0), default=-1)
        return text[first : first + 4000] if first >= 0 else text[-3000:]

    def daphne_errors(self) -> dict[str, int]:
        """Each distinct ERROR line daphne logged, with how often."""
        path = self.tmp / "daphne.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return dict(Counter(line[line.index("ERROR") :].strip() for line in lines if "ERROR" in line))

    # --- what the shells need -------------------------------------------------------------
    def credentials(self) -> tuple[Any, list[str]]:
        """A fresh Ed25519 key and the portal's certificates for it (as the browser terminal gets them)."""
        from accounts.models import User
        from requests_app.models import Grant
        from requests_app.services import grant_issue_certificate
        from terminal.bridge import ephemeral_key

        assert self.target is not None
        key, public_key = ephemeral_key()
        grant = Grant.objects.select_related("instance", "request__account").get(pk=self.target.grant_id)
        user = User.objects.get(pk=self.target.user_id)
        return key, grant_issue_certificate(grant=grant, user=user, public_key=public_key, upstream=True)

    def start_session(self) -> dict[str, str]:
        """StartSession (AWS-StartSSHSession) for the grant through the portal's service.

        Returns SessionId, StreamUrl and TokenValue; the IAM check runs as for the browser terminal.
        """
        from django.db import close_old_connections

        from accounts.models import User
        from requests_app.models import Grant
        from requests_app.services import grant_start_session
        from ssmchannel.documents import SSH_DOCUMENT

        assert self.target is not None
        close_old_connections()
        grant = Grant.objects.select_related("instance", "request__account").get(pk=self.target.grant_id)
        user = User.objects.get(pk=self.target.user_id)
        return grant_start_session(grant=grant, user=user, document=SSH_DOCUMENT, port=22, via="benchmark")


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:6.2f}x" if baseline else "     -"
