#!/usr/bin/env python
"""Expiry at scale: 500 due requests out of a large table, expired by the sweep's fan-out on the
revocation queue, as ratios to the sweep's query alone, measured in the same run.

    .venv/bin/python benchmarks/expiry.py                       # 100,000 active requests, 500 due
    .venv/bin/python benchmarks/expiry.py --rows 20000 --workers 2 --concurrency 8

Sets Django up itself. ``DATABASE_URL`` picks the database (default
postgres://postgres@127.0.0.1:5432/passport_bench_expiry), created if missing and migrated;
``--redis-url`` the broker (default redis://127.0.0.1:6379/10, flushed at the start). The active requests are
bulk-loaded once and reused by the next run with the same ``--rows``; each measurement makes
another ``--due`` of them due.

What is timed, each on its own fresh set of due requests:
- **query**: the sweep's claim alone (``SELECT ... FOR UPDATE SKIP LOCKED`` under the lock
  timeout, 500 rows out of the table), median of ``--repeat``: the baseline;
- **in one process**: the whole sweep in the benchmark's process, batch after batch
  (``access_requests_expire_due``, no broker, no workers);
- **fan-out**: ``expire_due_requests`` sent through the broker as beat sends it, to real Celery
  worker processes (``--workers`` of them, threads, ``--concurrency`` each) consuming the
  revocation queue alone; timed until none of the due requests is active any more (access
  revoked: passwords wiped, removal queued, the Logbook written) and until all are expired,
  with the CPU time the worker processes used meanwhile (less noisy on a shared machine).

The requests have no grants, so no removal runs on a host and each reaches ``expired`` as soon
as it is ended; the ending itself (row lock, status, Logbook entries, terminals signal) is the
real code. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/passport_bench_expiry"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
REASON = "benchmarks/expiry.py"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="Active requests in the table (default 100,000).")
    parser.add_argument("--due", type=int, default=500, help="How many of them are due per measurement.")
    parser.add_argument("--repeat", type=int, default=7, help="Timed runs of the query alone; the median is shown.")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes on the revocation queue.")
    parser.add_argument("--concurrency", type=int, default=4, help="Threads per worker process.")
    parser.add_argument("--batch", type=int, default=20, help="PASSPORT_EXPIRY_BATCH: requests per fanned-out task.")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="The broker; its database is flushed.")
    parser.add_argument("--skip-serial", action="store_true", help="Do not time the sweep in one process.")
    return parser.parse_args()


def setup_django(args: argparse.Namespace) -> None:
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ["REDIS_URL"] = args.redis_url  # never REDIS_URL from the environment: this one is flushed
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "passport_portal.settings")
    os.environ.setdefault("PASSPORT_LOG_LEVEL", "WARNING")
    os.environ.setdefault("PASSPORT_DEBUG", "false")
    os.environ["PASSPORT_EXPIRY_BATCH"] = str(args.batch)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from logbook_pagination import ensure_database

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def load(rows: int) -> None:
    """``rows`` active requests, far from due; topped up to the count when some were used."""
    from django.db import connection
    from django.utils import timezone

    from accounts.models import AwsAccount, User
    from requests_app.models import AccessRequest, RequestStatus

    user, _ = User.objects.get_or_create(username="bench-expiry", defaults={"email": "bench@example.test"})
    account, _ = AwsAccount.objects.get_or_create(
        account_id="999999999999",
        defaults={"name": "Bench", "regions": ["us-east-1"], "role_arn": "arn:aws:iam::999999999999:role/Bench"},
    )
    active = AccessRequest.objects.filter(reason=REASON, status=RequestStatus.ACTIVE)
    missing = rows - active.count()
    if missing <= 0:
        return
    print(f"Loading {missing:,} active requests...", flush=True)
    now = timezone.now()
    started = time.monotonic()
    batch = 5000
    for offset in range(0, missing, batch):
        AccessRequest.objects.bulk_create(
            AccessRequest(
                requester=user,
                account=account,
                reason=REASON,
                status=RequestStatus.ACTIVE,
                activated_at=now,
                # Spread over the coming days, as a busy installation's are.
                expires_at=now + timedelta(days=1, seconds=(offset + n) * 3),
            )
            for n in range(min(batch, missing - offset))
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE requests_app_accessrequest")
    print(f"Loaded in {time.monotonic() - started:.1f} s.", flush=True)


def make_due(count: int) -> list[int]:
    """``count`` random active requests made due a second ago."""
    from django.utils import timezone

    from requests_app.models import AccessRequest, RequestStatus

    ids = list(
        AccessRequest.objects.filter(reason=REASON, status=RequestStatus.ACTIVE, expires_at__gt=timezone.now())
        .order_by("?")
        .values_list("pk", flat=True)[:count]
    )
    AccessRequest.objects.filter(pk__in=ids).update(expires_at=timezone.now() - timedelta(seconds=1))
    return ids


def still_active(ids: list[int]) -> int:
    from requests_app.models import AccessRequest, RequestStatus

    return AccessRequest.objects.filter(pk__in=ids, status=RequestStatus.ACTIVE).count()


def not_expired(ids: list[int]) -> int:
    from requests_app.models import AccessRequest, RequestStatus

    return AccessRequest.objects.filter(pk__in=ids).exclude(status=RequestStatus.EXPIRED).count()


def time_query(args: argparse.Namespace) -> tuple[float, list[int]]:
    """The claim alone, on a fresh set of due requests; they stay due for the sweep in one process."""
    from requests_app.services import access_requests_claim_due

    ids = make_due(args.due)
    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        claimed = access_requests_claim_due()
        timings.append(time.perf_counter() - started)
        assert sorted(claimed) == sorted(ids), "the claim did not find exactly the due requests"
    return statistics.median(timings), ids


def time_serial(ids: list[int]) -> float:
    from requests_app.services import access_requests_expire_due

    started = time.perf_counter()
    expired = access_requests_expire_due()
    elapsed = time.perf_counter() - started
    assert expired == len(ids) and still_active(ids) == 0, (expired, len(ids))
    return elapsed


def start_workers(args: argparse.Namespace, log_dir: Path) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PASSPORT_CELERY_LOG_LEVEL": "WARNING"}
    workers = []
    for n in range(args.workers):
        log = (log_dir / f"bench-expiry-worker-{n}.log").open("w")
        command = [
            sys.executable, "-m", "celery", "-A", "passport_portal", "worker", "--queues", "revocation",
            "--pool", "threads", "--concurrency", str(args.concurrency), "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", f"bench-expiry-{n}@%h",
        ]  # fmt: skip
        workers.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + 60
    for n, worker in enumerate(workers):
        path = log_dir / f"bench-expiry-worker-{n}.log"
        while "ready." not in path.read_text():
            if worker.poll() is not None or time.monotonic() > deadline:
                stop_workers(workers)
                sys.exit(f"A Celery worker did not start:\n{path.read_text()[-3000:]}")
            time.sleep(0.1)
    return workers


def stop_workers(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def cpu_seconds(workers: list[subprocess.Popen[str]]) -> float:
    """User and system CPU time the worker processes have used so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for worker in workers:
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def time_fan_out(args: argparse.Namespace, workers: list[subprocess.Popen[str]]) -> tuple[float, float, float]:
    from workers import tasks

    ids = make_due(args.due)
    cpu_before = cpu_seconds(workers)
    started = time.perf_counter()
    tasks.expire_due_requests.apply_async()  # through the broker and the routes, as beat sends it
    revoked = expired = None
    deadline = started + 600
    while expired is None:
        now = time.perf_counter()
        if revoked is None and still_active(ids) == 0:
            revoked = now - started
        if revoked is not None and not_expired(ids) == 0:
            expired = now - started
        if now > deadline:
            sys.exit(f"Timed out: {still_active(ids)} still active, {not_expired(ids)} not expired")
        time.sleep(0.05)
    assert revoked is not None
    return revoked, expired, cpu_seconds(workers) - cpu_before


def main() -> None:
    args = parse_args()
    setup_django(args)
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    load(args.rows)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-expiry-"))
    print(f"{args.rows:,} active requests, {args.due} due per measurement; batches of {args.batch}.\n")

    query, due = time_query(args)
    serial = None if args.skip_serial else time_serial(due)
    if serial is None:
        from requests_app.services import access_requests_expire_due

        access_requests_expire_due()  # not timed: the fan-out starts from no due request
    workers = start_workers(args, log_dir)
    try:
        revoked, expired, cpu = time_fan_out(args, workers)
    finally:
        stop_workers(workers)

    print(f"{'measurement':<58}{'seconds':>10}{'vs query':>12}")
    print(f"{'query alone (claim ' + str(args.due) + ' due, SKIP LOCKED), median':<58}{query:>10.4f}{1:>11.0f}x")
    if serial is not None:
        label = f"in one process, batch after batch (all {args.due} ended)"
        print(f"{label:<58}{serial:>10.2f}{serial / query:>11.0f}x")
    label = f"fan-out, {args.workers} workers x {args.concurrency} threads"
    print(f"{label + ': none active any more':<58}{revoked:>10.2f}{revoked / query:>11.0f}x")
    print(f"{label + ': all expired':<58}{expired:>10.2f}{expired / query:>11.0f}x")
    print(f"{'  CPU the workers used meanwhile (s; ms per request)':<58}{cpu:>10.2f}{1000 * cpu / args.due:>10.1f}ms")
    if serial is not None:
        print(f"\nfan-out vs one process: {serial / revoked:.2f}x faster to revoke all {args.due}.")
    print(f"Goal (issue #16): {args.due} due out of {args.rows:,} expired within 30 s: "
          f"{'met' if expired <= 30 else 'NOT met'} ({expired:.1f} s).")  # fmt: skip


if __name__ == "__main__":
    main()
