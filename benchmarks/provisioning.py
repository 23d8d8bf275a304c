"""Provisioning throughput: N grants through the portal's worker against devcloud, compared
with running the very same scripts directly on the same local hosts, in the same run.

    .venv/bin/python benchmarks/provisioning.py [--grants 200] [--concurrency 8]

``--grants`` (default 200) is the number of grants; each request asks for two hosts.

Needs PostgreSQL and Redis on 127.0.0.1 (scripts/services starts them) and root (devcloud's
local hosts are mount namespaces). It prints the wall time of each path, their ratio, and
the portal's overhead per grant: Run Command round trips through moto's server, polling,
the database claims and the Logbook; then the CPU each part took per grant (worker, devcloud
with the approvals, the scripts), which a busy machine moves far less than the ratio. The
worker runs with the product's settings (Run Command polled as PASSPORT_RUN_COMMAND_POLL_MS
says, 500 ms at most by default). The direct path runs the scripts the worker renders: the
same CA lines, expiry and grant ids, removal with the grant's tombstone. Nothing here asserts
a time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
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
    parser.add_argument(
        "--pool",
        choices=["prefork", "threads"],
        default="prefork",
        help="the worker's pool: prefork (default), as deploy/'s units run it, or threads (one process)",
    )
    args = parser.parse_args()
    _setup_environment()

    from devcloud.seed import seed_demo
    from devcloud.server import DevCloud

    state = Path(tempfile.mkdtemp(prefix="bench-devcloud-"))
    cloud = DevCloud(state_dir=state).start()
    os.environ["AWS_ENDPOINT_URL"] = cloud.endpoint_url
    manifest = seed_demo(cloud.endpoint_url, state)

    import django

    django.setup()
    import redis
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(REDIS_URL).flushdb()

    from accounts.models import AwsAccount, Membership, User
    from fleet.scripts import render_create, render_remove
    from requests_app import services
    from requests_app.models import AccessRequest, Grant, GrantStatus, Instance

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
    try:
        time.sleep(3)
        # --- through the portal ---------------------------------------------------------
        requests = []
        for n in range((args.grants + len(hosts) - 1) // len(hosts)):
            person = User.objects.create_user(f"bench{n}")
            Membership.objects.create(user=person, account=account, role="admin")
            requests.append(
                services.access_request_create(requester=person, account=account, instances=hosts, reason="bench")
            )
        total = Grant.objects.count()
        cpu_before = _cpu_seconds(worker.pid)
        services_before = _services_cpu_seconds()
        started = time.perf_counter()
        for access_request in requests:
            services.access_request_approve(access_request=access_request, approver=approver)
        approved = time.perf_counter() - started
        while Grant.objects.filter(status=GrantStatus.READY).count() < total:
            if Grant.objects.filter(status=GrantStatus.FAILED).exists():
                raise SystemExit(
                    "a grant failed: " + str(Grant.objects.filter(status="failed").values("last_error")[:1])
                )
            time.sleep(0.2)
        portal_create = time.perf_counter() - started
        portal_cpu = [after - before for before, after in zip(cpu_before, _cpu_seconds(worker.pid), strict=True)]
        services_cpu = [after - before for before, after in zip(services_before, _services_cpu_seconds(), strict=True)]
        print(
            f"portal: {total} grants ready in {portal_create:.2f} s ({len(requests)} approvals took {approved:.2f} s)",
            flush=True,
        )
        in_worker = _script_times()
        started = time.perf_counter()
        for access_request in AccessRequest.objects.all():
            services.access_request_complete(access_request=access_request, actor=access_request.requester)
        while Grant.objects.filter(status=GrantStatus.REMOVED).count() < total:
            time.sleep(0.2)
        portal_remove = time.perf_counter() - started
    except BaseException:
        print((state / "worker.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    # --- the same scripts, run directly on the same hosts, with the same parallelism -------
    local_hosts = cloud.runtime.hosts
    jobs = [(hosts[i % len(hosts)].instance_id, f"rs-bench{i:03d}"[:11]) for i in range(total)]

    script_seconds: list[float] = []

    def run(instance_id: str, script: str) -> None:
        began = time.perf_counter()
        process = local_hosts.run(
            instance_id, ["bash", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, err = process.communicate()
        if process.returncode:
            raise RuntimeError(err)
        script_seconds.append(time.perf_counter() - began)

    from core.usernames import masked_id

    names = [(instance_id, f"rs-{masked_id(10_000 + i)}", str(uuid.uuid4())) for i, (instance_id, _) in enumerate(jobs)]
    # As the worker renders them: the CA lines every grant's authorized_keys gets, the account's expiry.
    ca_public_keys = ca_trusted_public_keys()
    expires_on = date.today() + timedelta(days=2)
    scripts_before = _cpu_seconds(None)[2]
    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(
            pool.map(
                lambda job: run(
                    job[0],
                    render_create(
                        platform="linux",
                        username=job[1],
                        expires_on=expires_on,
                        grant_uid=job[2],
                        ca_public_keys=ca_public_keys,
                    ),
                ),
                names,
            )
        )
    direct_create = time.perf_counter() - started
    direct_scripts_cpu = _cpu_seconds(None)[2] - scripts_before
    direct_each = sorted(script_seconds)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(
            pool.map(lambda job: run(job[0], render_remove(platform="linux", username=job[1], grant_uid=job[2])), names)
        )
    direct_remove = time.perf_counter() - started
    cloud.stop()

    print(f"grants: {total} on {len(hosts)} local hosts, concurrency {args.concurrency}")
    for label, portal, direct in (("create", portal_create, direct_create), ("remove", portal_remove, direct_remove)):
        overhead_ms = (portal - direct) / total * 1000
        print(
            f"{label:6}  portal {portal:7.2f} s   direct {direct:7.2f} s   ratio {portal / direct:5.2f}x   "
            f"portal overhead {overhead_ms:6.1f} ms per grant"
        )
    # CPU is what the portal takes from the scripts on a small machine, and unlike wall time it
    # hardly moves with what else runs there.
    worker_ms, devcloud_ms, scripts_ms = (seconds / total * 1000 for seconds in portal_cpu)
    print(
        f"CPU per grant, create: worker {worker_ms:.0f} ms, this process (devcloud, approvals) {devcloud_ms:.0f} ms; "
        f"the scripts through the portal {scripts_ms:.0f} ms, run directly {direct_scripts_cpu / total * 1000:.0f} ms; "
        f"PostgreSQL {services_cpu[0] / total * 1000:.0f} ms, Redis {services_cpu[1] / total * 1000:.0f} ms"
    )
    # Where a grant's time goes in the worker: from its claim (grant.provisioning) to grant.ready
    # is the Run Command round trip through devcloud with its polls; the rest of the wall time
    # is queueing and dispatch (tasks, claims, the Logbook) with the concurrency above.
    print(
        f"per grant, create: claim to ready in the worker median {statistics.median(in_worker) * 1000:.0f} ms "
        f"(p90 {in_worker[int(len(in_worker) * 0.9)] * 1000:.0f}); the script run directly median "
        f"{statistics.median(direct_each) * 1000:.0f} ms (p90 {direct_each[int(len(direct_each) * 0.9)] * 1000:.0f})"
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


def _script_times() -> list[float]:
    """Each grant's time from its claim to ready, from the Logbook's own entries."""
    from audit.models import LogbookEntry

    claimed: dict[str, Any] = {}
    ready: dict[str, Any] = {}
    for action, detail, at in LogbookEntry.objects.filter(action__in=["grant.provisioning", "grant.ready"]).values_list(
        "action", "detail", "created_at"
    ):
        (claimed if action == "grant.provisioning" else ready)[detail["username"]] = at
    return sorted((ready[name] - claimed[name]).total_seconds() for name in ready if name in claimed)


if __name__ == "__main__":
    main()
