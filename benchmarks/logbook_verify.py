#!/usr/bin/env python
"""``verify_logbook`` at scale: entries checked per second over a keyed Logbook of 1,000,000
entries, against reading the same rows alone, in the same run.

    .venv/bin/python benchmarks/logbook_verify.py                 # 1,000,000 entries
    .venv/bin/python benchmarks/logbook_verify.py --rows 200000 --repeat 3

Sets Django up itself. ``DATABASE_URL`` picks the database (default
postgres://postgres@127.0.0.1:5432/passport_bench_verify), created if missing and migrated. The
entries are loaded with COPY, chained and keyed (HMAC-SHA256 under the configured Logbook key)
by the product's own ``audit.services.entry_digest``, and reused by the next run with the same
``--rows`` and key; ``--reload`` loads them again.

What is timed (the fastest of ``--repeat`` runs):
- **read alone**: every row's columns streamed from PostgreSQL through a server-side cursor,
  nothing done with them: the baseline;
- **verify**: ``audit.integrity.logbook_verify`` (the chain walk ``manage.py verify_logbook``
  runs: every keyed hash recomputed, every link and the head checked). No evidence bucket is
  configured, so the checkpoints' part (a comparison per entry) is not in it.

Goal (issue #16): at least 200,000 entries per second at 1,000,000 entries. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/passport_bench_verify"
COLUMNS = (
    "created_at",
    "actor_id",
    "actor_label",
    "action",
    "account_id",
    "request_id",
    "instance_ids",
    "detail",
    "prev_hash",
    "hash",
    "key_id",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Entries in the Logbook (default 1,000,000).")
    parser.add_argument("--repeat", type=int, default=2, help="Timed runs of each; the fastest counts (default 2).")
    parser.add_argument("--reload", action="store_true", help="Load the entries again even if they match.")
    return parser.parse_args()


def setup_django() -> None:
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "passport_portal.settings")
    os.environ.setdefault("PASSPORT_LOG_LEVEL", "WARNING")
    os.environ.setdefault("PASSPORT_DEBUG", "false")
    os.environ["PASSPORT_EVIDENCE_BUCKET"] = ""  # the chain walk alone
    from logbook_pagination import ensure_database

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def generate(rows: int, key_id: str, seed: int = 16) -> Iterator[tuple[Any, ...]]:
    """Entries as the product writes them: keyed, chained, one every 30 s or so over the past."""
    from logbook_pagination import ACTIONS, WORDS

    from audit.services import GENESIS_HASH, canonical_time, entry_digest

    rng = random.Random(seed)
    accounts = [f"{100000000000 + n * 7919:012d}" for n in range(40)]
    people = [(1000 + n, f"user{n:03d}") for n in range(300)]
    instances = [f"i-{rng.getrandbits(68):017x}" for _ in range(20_000)]
    names = [name for name, _ in ACTIONS]
    weights = [weight for _, weight in ACTIONS]
    start = datetime.now(UTC) - timedelta(seconds=30 * rows)
    prev_hash = GENESIS_HASH
    for n in range(rows):
        created_at = start + timedelta(seconds=30 * n, microseconds=rng.randrange(1_000_000))
        action = rng.choices(names, weights)[0]
        actor_id, actor_label = (None, "system") if rng.random() < 0.45 else rng.choice(people)
        account_id = rng.choice(accounts) if action != "logbook.exported" else ""
        request_id = rng.randrange(1, rows // 8 + 2) if action.startswith(("request", "grant")) else None
        picked = rng.sample(instances, rng.choice((1, 1, 1, 2, 3))) if action.startswith(("grant", "request")) else []
        instance_ids = f" {' '.join(picked)} " if picked else ""
        detail: dict[str, Any]
        if action == "request.created":
            detail = {"reason": " ".join(rng.sample(WORDS, 4)), "ticket": f"INC-{rng.randrange(10**6):06d}"}
        elif action.startswith("grant"):
            detail = {"username": f"rs-{rng.getrandbits(24):06x}", "command_id": f"{rng.getrandbits(64):016x}"}
        else:
            detail = {"note": rng.choice(WORDS), "é": "ü"}
        digest = entry_digest(
            key_id=key_id,
            prev_hash=prev_hash,
            created_at=canonical_time(created_at),
            actor_id=actor_id,
            actor_label=actor_label,
            action=action,
            account_id=account_id,
            request_id=request_id,
            instance_ids=instance_ids,
            detail=detail,
        )
        yield (
            created_at,
            actor_id,
            actor_label,
            action,
            account_id,
            request_id,
            instance_ids,
            detail,
            prev_hash,
            digest,
        )
        prev_hash = digest


def load(rows: int, key_id: str) -> None:
    from django.db import connection, transaction

    from audit.models import LogbookEntry, LogbookHead

    started = time.monotonic()
    last_hash, last_at = "", None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL passport.logbook_truncate = 'allow'")
        cursor.execute("TRUNCATE audit_logbookentry, audit_logbookhead RESTART IDENTITY")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        with cursor.cursor.copy(f"COPY audit_logbookentry ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for n, row in enumerate(generate(rows, key_id), 1):
                copy.write_row((*row[:7], json.dumps(row[7]), *row[8:], key_id))
                last_hash, last_at = row[9], row[0]
                if n % 200_000 == 0:
                    print(f"  {n:,} entries copied ({time.monotonic() - started:.0f} s)", flush=True)
        last_id = LogbookEntry.objects.order_by("-id").values_list("id", flat=True).first()
        LogbookHead.objects.update_or_create(
            pk=1, defaults={"last_hash": last_hash, "last_entry_id": last_id, "last_created_at": last_at}
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_logbookentry")
    print(f"Loaded {rows:,} entries in {time.monotonic() - started:.1f} s.", flush=True)


def read_alone() -> int:
    """Every row's columns through a server-side cursor, nothing done with them."""
    from django.db import connection, transaction

    count = 0
    with transaction.atomic():
        connection.ensure_connection()
        with connection.connection.cursor(name="bench_read") as cursor:
            cursor.itersize = 20_000
            cursor.execute(f"SELECT id, {', '.join(COLUMNS)} FROM audit_logbookentry ORDER BY id")  # noqa: S608
            for _ in cursor:
                count += 1
    return count


def main() -> None:
    args = parse_args()
    setup_django()
    from django.conf import settings
    from django.db import connection

    from audit.integrity import logbook_verify
    from audit.models import LogbookEntry

    key_id = str(settings.PASSPORT_LOGBOOK_KEY_ID)
    count = LogbookEntry.objects.count()
    keyed = not LogbookEntry.objects.exclude(key_id=key_id).exists()
    if args.reload or count != args.rows or not keyed:
        print(f"Loading {args.rows:,} keyed entries into {connection.settings_dict['NAME']}…", flush=True)
        load(args.rows, key_id)
    else:
        print(f"Reusing {count:,} entries in {connection.settings_dict['NAME']}.")

    reads, verifies = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        assert read_alone() == args.rows
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = logbook_verify()
        verifies.append(time.perf_counter() - started)
        assert report.intact and report.entries == args.rows, (report.problem_count, report.problems[:3])
    read, verify = min(reads), min(verifies)
    rate = args.rows / verify
    print(f"{args.rows:,} keyed entries, fastest of {args.repeat}")
    print(f"read alone (server-side cursor):  {read:7.2f} s  {args.rows / read:10,.0f} entries/s")
    print(f"verify (chain walk, every HMAC):  {verify:7.2f} s  {rate:10,.0f} entries/s")
    print(f"verify / read alone: {verify / read:.2f}x")
    print(f"Goal (issue #16): at least 200,000 entries/s: {'met' if rate >= 200_000 else 'NOT met'} ({rate:,.0f}/s).")


if __name__ == "__main__":
    main()
