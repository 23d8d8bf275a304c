"""Provisioning throughput: N grants through the portal's worker against devcloud, compared
with running the very same scripts directly on the same local hosts, in the same run.

    .venv/bin/python benchmarks/provisioning.py [--grants 200] [--concurrency 8] [--rounds 3] [--host-cpus 1]

``--grants`` (default 200) is the number of grants per round; each request asks for two hosts.
The portal and the direct path take turns, ``--rounds`` times (a machine that gets busier or
quieter then moves both alike); each round's ratio is printed, then the medians.

Needs PostgreSQL and Redis on 127.0.0.1 (scripts/services starts them) and root (devcloud's
local hosts are mount namespaces). It prints the wall time of each path, their ratio, and
the portal's overhead per grant: Run Command round trips through moto's server, polling,
the database claims and the Logbook; then the CPU each part took per grant (worker, devcloud,
the approvals, the scripts), which a busy machine moves far less than the ratio. The
worker runs with the product's settings (Run Command polled as PASSPORT_RUN_COMMAND_POLL_MS
says, 500 ms at most by default). The direct path runs the scripts the worker renders: one
per request for both hosts (each host takes its own grant by AWS_SSM_INSTANCE_ID, set as the
agent sets it), the same CA lines, expiry and grant ids, removal with the grant's tombstone.
With ``--host-cpus`` the local hosts run on the CPUs named and everything else on the others,
as an instance's scripts run on its own vCPUs and never on the portal's. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _proc import cpu_ticks, pids_named, process_tree  # noqa: E402

DB_NAME = "passport_bench_provisioning"
REDIS_URL = "redis://127.0.0.1:6379/11"


def _setup_environment() -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "passport_portal.settings",
            "PASSPORT_ENV": "test",
            # As deployed: Django's DEBUG keeps every query's SQL in memory and costs CPU per query.
            "PASSPORT_DEBUG": "0",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
            "REDIS_URL": REDIS_URL,
            "AWS_ACCESS_KEY_ID": "devcloud",
            "AWS_SECRET_ACCESS_KEY": "devcloud",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB_NAME}"], check=True
    )
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {DB_NAME}"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="portal and direct take turns this many times")
    parser.add_argument(
        "--pool",
        choices=["prefork", "threads"],
        default="prefork",
        help="the worker's pool: prefork (default), as deploy/'s units run it, or threads (one process)",
    )
    parser.add_argument(
        "--host-cpus",
        metavar="LIST",
        help="run the local hosts on these CPUs (e.g. 1) and the portal, devcloud, PostgreSQL and Redis "
        "on the others, as instances have CPUs of their own (default: everything shares every CPU)",
    )
    args = parser.parse_args()
    placement = _cpu_placement(args.host_cpus)
    _setup_environment()

    from devcloud.seed import seed_demo
    from devcloud.server import DevCloud

    state = Path(tempfile.mkdtemp(prefix="bench-devcloud-"))
    cloud = DevCloud(state_dir=state).start()
    cloud.runtime.hosts.cpus = placement.hosts if placement else None
    os.environ["AWS_ENDPOINT_URL"] = cloud.endpoint_url
    manifest = seed_demo(cloud.endpoint_url, state)

    import django

    django.setup()
    import redis
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(REDIS_URL).flushdb()

    from accounts.models import AwsAccount, Membership, User
    from fleet.scripts import render_create_per_host, render_remove_per_host
    from requests_app import services
    from requests_app.models import Grant, GrantStatus, Instance

    item = next(a for a in manifest["accounts"] if a["name"] == "Acme Production")
    account = AwsAccount.objects.create(
        account_id=item["id"], name=item["name"], role_arn=item["role_arn"], regions=item["regions"]
    )
    services.inventory_sync(account=account)
    from sshca.services import ca_keys_ensure, ca_trusted_public_keys

    ca_keys_ensure()  # made once per installation: not part of any grant's cost
    hosts = list(Instance.objects.filter(account=account, name__in=["web-1", "db-1"]).order_by("name"))
    approver = User.objects.create_user("bench-approver")
    Membership.objects.create(user=approver, account=account, role="admin", can_approve=True)

    worker_log = (state / "worker.log").open("w")
    worker = subprocess.Popen(
        # Both queues, as every worker does (removal goes to the revocation queue).
        [sys.executable, "-m", "celery", "-A", "passport_portal", "worker", "--pool", args.pool,
         "--queues", "celery,revocation",
         "--concurrency", str(args.concurrency), "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=dict(os.environ), stdout=worker_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    requests_per_round = (args.grants + len(hosts) - 1) // len(hosts)
    total = requests_per_round * len(hosts)

    def portal_round(number: int, size: int = requests_per_round) -> Round:
        """Approve a round's requests, wait until every grant is ready; complete them, wait until removed."""
        requests = []
        for n in range(size):
            person = User.objects.create_user(f"bench{number}-{n}")
            Membership.objects.create(user=person, account=account, role="admin")
            requests.append(
                services.access_request_create(requester=person, account=account, instances=hosts, reason="bench")
            )
        grants = Grant.objects.filter(request__in=requests)
        total = size * len(hosts)
        cpu_before = _cpu_seconds(worker.pid)
        services_before = _services_cpu_seconds()
        # This thread's own CPU: the approvals, then the polling below; the rest of this process is devcloud.
        main_thread_before = time.thread_time()
        started = time.perf_counter()
        for access_request in requests:
            services.access_request_approve(access_request=access_request, approver=approver)
        approvals_cpu = time.thread_time() - main_thread_before
        while grants.filter(status=GrantStatus.READY).count() < total:
            if grants.filter(status=GrantStatus.FAILED).exists():
                raise SystemExit("a grant failed: " + str(grants.filter(status="failed").values("last_error")[:1]))
            time.sleep(0.2)
        create = time.perf_counter() - started
        main_thread_cpu = time.thread_time() - main_thread_before
        worker_cpu, own_cpu, scripts_cpu = (
            after - before for before, after in zip(cpu_before, _cpu_seconds(worker.pid), strict=True)
        )
        database_cpu, redis_cpu = (
            after - before for before, after in zip(services_before, _services_cpu_seconds(), strict=True)
        )
        started = time.perf_counter()
        for access_request in requests:
            services.access_request_complete(access_request=access_request, actor=access_request.requester)
        while grants.filter(status=GrantStatus.REMOVED).count() < total:
            time.sleep(0.2)
        remove = time.perf_counter() - started
        cpu_ms = {
            "worker": worker_cpu,
            "devcloud": own_cpu - main_thread_cpu,
            "approvals": approvals_cpu,
            "scripts": scripts_cpu,
            "postgres": database_cpu,
            "redis": redis_cpu,
        }
        return Round(create, remove, {key: value / total * 1000 for key, value in cpu_ms.items()},
                     _script_times([request.pk for request in requests]))  # fmt: skip

    # --- the same scripts, run directly on the same hosts, with the same parallelism -------
    local_hosts = cloud.runtime.hosts
    # As the worker renders them: the CA lines every grant's authorized_keys gets, the account's expiry.
    ca_public_keys = ca_trusted_public_keys()
    expires_at = datetime.now(UTC) + timedelta(days=2)

    from core.usernames import masked_id

    def direct_round(number: int) -> Round:
        script_seconds: list[float] = []

        def run(instance_id: str, script: str) -> None:
            began = time.perf_counter()
            command = ["env", f"AWS_SSM_INSTANCE_ID={instance_id}", "bash", "-c", script]
            process = local_hosts.run(instance_id, command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, err = process.communicate()
            if process.returncode:
                raise RuntimeError(err)
            script_seconds.append(time.perf_counter() - began)

        # As the worker sends them: one script per request for both hosts, each host taking its
        # own grant by the instance id the agent gives it (AWS_SSM_INSTANCE_ID).
        first = 10_000 + number * requests_per_round
        requests = []
        for n in range(requests_per_round):
            username = f"rs-{masked_id(first + n)}"
            grants = {host.instance_id: str(uuid.uuid4()) for host in hosts}
            create_script = render_create_per_host(
                username=username, expires_at=expires_at, grants=grants, ca_public_keys=ca_public_keys
            )
            requests.append((create_script, render_remove_per_host(username=username, grants=grants)))
        creates = [(host.instance_id, create) for create, _ in requests for host in hosts]
        removes = [(host.instance_id, remove) for _, remove in requests for host in hosts]
        scripts_before = _cpu_seconds(None)[2]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(lambda job: run(*job), creates))
        create = time.perf_counter() - started
        scripts_cpu = _cpu_seconds(None)[2] - scripts_before
        each = sorted(script_seconds)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(lambda job: run(*job), removes))
        return Round(create, time.perf_counter() - started, {"scripts": scripts_cpu / total * 1000}, each)

    portal: list[Round] = []
    direct: list[Round] = []
    try:
        time.sleep(3)
        # Not timed: each pool process's first task (imports, connections) is no grant's cost.
        portal_round(-1, size=args.concurrency)
        print(f"grants: {total} per round on {len(hosts)} local hosts, concurrency {args.concurrency}", flush=True)
        if placement:
            print(f"CPUs: the hosts {sorted(placement.hosts)}; the portal, devcloud and the services "
                  f"{sorted(placement.portal)}", flush=True)  # fmt: skip
        # Turn about, so that a machine getting busier or quieter moves both paths alike.
        for number in range(args.rounds):
            portal.append(portal_round(number))
            direct.append(direct_round(number))
            _print_round(number + 1, portal[-1], direct[-1])
    except BaseException:
        print((state / "worker.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        cloud.stop()
        if placement:
            placement.restore()

    print(f"median of {args.rounds} rounds:")
    for label in ("create", "remove"):
        ratios = [getattr(p, label) / getattr(d, label) for p, d in zip(portal, direct, strict=True)]
        portal_s = statistics.median(getattr(p, label) for p in portal)
        direct_s = statistics.median(getattr(d, label) for d in direct)
        print(
            f"{label:6}  portal {portal_s:7.2f} s   direct {direct_s:7.2f} s   ratio {statistics.median(ratios):5.2f}x "
            f"(rounds {min(ratios):.2f}-{max(ratios):.2f})   "
            f"portal overhead {(portal_s - direct_s) / total * 1000:6.1f} ms per grant"
        )
    # CPU is what the portal takes from the scripts on a small machine, and unlike wall time it
    # hardly moves with what else runs there.
    cpu = {key: statistics.median(p.cpu_ms[key] for p in portal) for key in portal[0].cpu_ms}
    print(
        f"CPU per grant, create: worker {cpu['worker']:.0f} ms, devcloud {cpu['devcloud']:.0f} ms, "
        f"the approvals {cpu['approvals']:.0f} ms; the scripts through the portal {cpu['scripts']:.0f} ms, "
        f"run directly "
        f"{statistics.median(d.cpu_ms['scripts'] for d in direct):.0f} ms; PostgreSQL {cpu['postgres']:.0f} ms, "
        f"Redis {cpu['redis']:.0f} ms"
    )
    # Where a grant's time goes in the worker: from its claim (grant.provisioning) to grant.ready
    # is the Run Command round trip through devcloud with its polls; the rest of the wall time
    # is queueing and dispatch (tasks, claims, the Logbook) with the concurrency above.
    in_worker = sorted(seconds for p in portal for seconds in p.each)
    direct_each = sorted(seconds for d in direct for seconds in d.each)
    print(
        f"per grant, create: claim to ready in the worker median {statistics.median(in_worker) * 1000:.0f} ms "
        f"(p90 {in_worker[int(len(in_worker) * 0.9)] * 1000:.0f}); the script run directly median "
        f"{statistics.median(direct_each) * 1000:.0f} ms (p90 {direct_each[int(len(direct_each) * 0.9)] * 1000:.0f})"
    )


@dataclass
class Round:
    create: float  # seconds until every grant was ready (portal) or every create script had run (direct)
    remove: float  # the same for removal
    cpu_ms: dict[str, float]  # CPU per grant while creating, by part
    each: list[float]  # per grant: claim to ready in the worker (portal), the create script's run (direct)


@dataclass
class _Placement:
    """Which CPUs the hosts run on and which the rest, with the services' own masks to put back."""

    hosts: frozenset[int]
    portal: frozenset[int]
    services: dict[int, set[int]]  # thread id of PostgreSQL or Redis: its affinity before

    def restore(self) -> None:
        for tid, cpus in self.services.items():
            with contextlib.suppress(OSError):  # ended meanwhile
                os.sched_setaffinity(tid, cpus)


def _cpu_placement(host_cpus: str | None) -> _Placement | None:
    """Split the CPUs: the local hosts on ``host_cpus``, everything else (this process and the
    threads and processes it starts, PostgreSQL, Redis) on the rest. None: no split."""
    if not host_cpus:
        return None
    available = frozenset(os.sched_getaffinity(0))
    try:
        hosts = frozenset(int(cpu) for cpu in host_cpus.split(","))
    except ValueError:
        raise SystemExit(f"--host-cpus: a comma-separated list of CPU numbers, not {host_cpus!r}") from None
    portal = available - hosts
    if not hosts <= available or not portal:
        raise SystemExit(f"--host-cpus {host_cpus}: needs CPUs out of {sorted(available)}, leaving at least one")
    # Before any thread or child starts: each inherits the mask of the thread that starts it.
    os.sched_setaffinity(0, portal)
    services: dict[int, set[int]] = {}
    for pid in pids_named("postgres", "redis-server"):
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                tid = int(task.name)
                services[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, portal)  # new PostgreSQL backends inherit the postmaster's
    return _Placement(hosts, portal, services)


def _print_round(number: int, portal: Round, direct: Round) -> None:
    print(
        f"round {number}: create portal {portal.create:6.2f} s direct {direct.create:6.2f} s "
        f"({portal.create / direct.create:.2f}x); remove portal {portal.remove:6.2f} s direct {direct.remove:6.2f} s "
        f"({portal.remove / direct.remove:.2f}x); worker CPU {portal.cpu_ms['worker']:.0f} ms per grant",
        flush=True,
    )


def _cpu_seconds(worker_pid: int | None) -> tuple[float, float, float]:
    """CPU seconds so far (user and system) of the worker (with its pool's processes), of this
    process (devcloud's server and script threads, the approvals) and of its finished children
    (the scripts; the worker is one too, but counted only once it has exited)."""
    worker = 0.0
    if worker_pid is not None:
        worker = sum(cpu_ticks(process_tree(worker_pid)).values()) / os.sysconf("SC_CLK_TCK")
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return worker, own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _services_cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of PostgreSQL (the server with the backends it reaped, and the live ones) and of Redis."""
    clock = os.sysconf("SC_CLK_TCK")
    database, redis = (sum(cpu_ticks(pids_named(name)).values()) / clock for name in ("postgres", "redis-server"))
    return database, redis


def _script_times(request_ids: list[int]) -> list[float]:
    """Each grant's time from its claim to ready, from the Logbook's own entries of these requests."""
    from audit.models import LogbookEntry

    claimed: dict[str, Any] = {}
    ready: dict[str, Any] = {}
    entries = LogbookEntry.objects.filter(action__in=["grant.provisioning", "grant.ready"], request_id__in=request_ids)
    for action, detail, at in entries.values_list("action", "detail", "created_at"):
        (claimed if action == "grant.provisioning" else ready)[detail["username"]] = at
    return sorted((ready[name] - claimed[name]).total_seconds() for name in ready if name in claimed)


if __name__ == "__main__":
    main()
