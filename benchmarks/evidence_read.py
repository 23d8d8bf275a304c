#!/usr/bin/env python
"""Reading every checkpoint in the evidence bucket, as ``verify_logbook`` does before its walk:
one GET at a time (PASSPORT_EVIDENCE_READ_CONCURRENCY=1, what the reader did before) against
several in flight at once, in the same run, on devcloud's S3.

    .venv/bin/python benchmarks/evidence_read.py                        # 5,000 objects, 16 at once
    .venv/bin/python benchmarks/evidence_read.py --objects 20000 --latency-ms 15

devcloud (moto's S3, started here as its own process) answers from this machine in well under
a millisecond of network, and has no way to delay S3's answers; real S3 takes 5-20 ms a GET.
So each mode runs twice:

- **as-is**: devcloud's S3 as it answers; the CPU of moto's server (on the same cores here)
  bounds what concurrency can gain;
- **simulated latency**: the same reads with ``--latency-ms`` slept in this process before each
  GET is sent (a handler on botocore's ``before-send`` event of the default session, which the
  reader's client comes from): the wait on the network that concurrency overlaps.

What is timed is ``audit.anchor.coverage.checkpoints_load``: the listing, the GETs, and the
signature check of each checkpoint. The objects are signed checkpoints as the periodic task
writes them (``checkpoint_sign``), under keys of the same form and under the same Object Lock
retention, written once by 8 threads (not timed). Both modes must return the same checkpoints
in the same order. Nothing here asserts a time. The machine is shared: repeat before trusting
a small change.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

A_YEAR = 525_600  # a heartbeat a minute (PASSPORT_LOGBOOK_CHECKPOINT_SECONDS=60)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=5000, help="Checkpoints in the bucket (default 5,000).")
    parser.add_argument("--concurrency", type=int, default=16, help="GETs in flight at once (default 16).")
    parser.add_argument(
        "--latency-ms", type=float, default=10.0, help="Simulated latency slept before each GET (default 10; 0: skip)."
    )
    parser.add_argument("--repeat", type=int, default=1, help="Timed runs of each mode; the fastest counts.")
    return parser.parse_args()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def _start_devcloud(state: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    log = state / "devcloud.log"
    devcloud = subprocess.Popen(
        [sys.executable, "-m", "devcloud", "serve", "--port", str(port), "--state-dir", str(state / "dc")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return devcloud, port
        except OSError:
            if devcloud.poll() is not None or time.monotonic() > deadline:
                devcloud.terminate()
                raise SystemExit(f"devcloud did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def write_checkpoints(count: int) -> float:
    """``count`` signed checkpoints, a minute apart, as the periodic task writes them; seconds taken."""
    import boto3
    from django.conf import settings

    from audit.anchor.signing import checkpoint_sign
    from audit.anchor.storage import retain_until

    # One client for all the writers (evidence_put makes one per object, which is what costs here).
    client = boto3.client("s3", endpoint_url=settings.AWS_ENDPOINT_URL, region_name=settings.AWS_REGION)
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def write(number: int) -> None:
        written = start + timedelta(minutes=number)
        entry_id = 1 + number // 3  # the head moves now and then; heartbeats in between
        fields = {
            "entry_id": entry_id,
            "hash": secrets.token_hex(32),
            "key_id": settings.PASSPORT_LOGBOOK_KEY_ID,
            "entry_at": written.isoformat(),
            "written_at": written.isoformat(),
            "reason": "heartbeat" if number % 3 else "periodic",
            "next_within_seconds": 60,
        }
        key = f"{settings.PASSPORT_EVIDENCE_PREFIX}{entry_id:015d}-{written:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
        client.put_object(
            Bucket=settings.PASSPORT_EVIDENCE_BUCKET, Key=f"{key}.json", Body=checkpoint_sign(fields),
            ContentType="application/json", ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=retain_until(datetime.now(UTC)), ChecksumAlgorithm="SHA256",
        )  # fmt: skip

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(count)))
    return time.perf_counter() - started


def timed(concurrency: int, repeat: int, devcloud_pid: int) -> tuple[float, float, float, list[Any]]:
    """The fastest of ``repeat`` loads at ``concurrency``: seconds, this process's and devcloud's CPU
    seconds, and what was loaded."""
    from django.test import override_settings

    from audit.anchor.coverage import checkpoints_load

    best, own, theirs, loaded = float("inf"), 0.0, 0.0, []
    for _ in range(repeat):
        with override_settings(PASSPORT_EVIDENCE_READ_CONCURRENCY=concurrency):
            cpu_before, devcloud_before, started = time.process_time(), _cpu_of(devcloud_pid), time.perf_counter()
            loaded, problems, _refusals = checkpoints_load()
            elapsed = time.perf_counter() - started
            used, devcloud_used = time.process_time() - cpu_before, _cpu_of(devcloud_pid) - devcloud_before
        if problems:
            raise SystemExit(f"{len(problems)} object(s) failed their check: {problems[0].message}")
        if elapsed < best:
            best, own, theirs = elapsed, used, devcloud_used
    return best, own, theirs, loaded


def compare(label: str, args: argparse.Namespace, devcloud_pid: int) -> None:
    sequential, *sequential_cpu, one_by_one = timed(1, args.repeat, devcloud_pid)
    concurrent, *concurrent_cpu, together = timed(args.concurrency, args.repeat, devcloud_pid)
    if together != one_by_one or len(together) != args.objects:
        raise SystemExit("the two modes loaded different checkpoints")
    print(f"\n{label}")
    for name, seconds, (own, theirs) in (
        ("1 at a time (before)", sequential, sequential_cpu),
        (f"{args.concurrency} at once", concurrent, concurrent_cpu),
    ):
        year = A_YEAR / (args.objects / seconds) / 60
        print(
            f"  {name:>20}: {seconds:6.2f} s, {args.objects / seconds:5.0f} objects/s, CPU here {own:5.2f} s, "
            f"devcloud {theirs:5.2f} s; a year of heartbeats ({A_YEAR:,}) at this rate: {year:5.1f} min"
        )
    print(f"  {args.concurrency} at once / 1 at a time: {sequential / concurrent:.2f}x faster")


def with_latency(seconds: float) -> Callable[[], None]:
    """Sleep ``seconds`` before every GET any new client of the default session sends; the undo."""
    import boto3

    def delay(**_: Any) -> None:
        time.sleep(seconds)

    boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
    events.register("before-send.s3.GetObject", delay)
    return lambda: events.unregister("before-send.s3.GetObject", delay)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        devcloud, port = _start_devcloud(Path(tmp))
        try:
            os.environ.update(
                {
                    "PASSPORT_ENV": "test",
                    "DJANGO_SETTINGS_MODULE": "passport_portal.settings",
                    "PASSPORT_LOG_LEVEL": "WARNING",
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                    "AWS_ACCESS_KEY_ID": "devcloud",
                    "AWS_SECRET_ACCESS_KEY": "devcloud",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "PASSPORT_EVIDENCE_BUCKET": f"bench-evidence-{uuid.uuid4().hex[:12]}",
                    "PASSPORT_EVIDENCE_RETENTION_DAYS": "1",
                }
            )
            import django

            django.setup()
            from audit.anchor.storage import evidence_bucket_ensure

            evidence_bucket_ensure()
            wrote = write_checkpoints(args.objects)
            print(
                f"{args.objects:,} signed checkpoints written to devcloud's S3 in {wrote:.1f} s (8 writers, not timed)"
            )
            print(f"timed: checkpoints_load (listing, GETs, signature checks), fastest of {args.repeat}")
            compare("devcloud's S3 as-is (loopback, no added latency)", args, devcloud.pid)
            if args.latency_ms > 0:
                undo = with_latency(args.latency_ms / 1000)
                try:
                    label = f"SIMULATED latency: {args.latency_ms:g} ms slept in the client before each GET"
                    compare(label, args, devcloud.pid)
                finally:
                    undo()
        finally:
            devcloud.terminate()
            devcloud.wait(timeout=20)


if __name__ == "__main__":
    main()
