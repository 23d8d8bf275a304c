#!/usr/bin/env python
"""``verify_logbook`` at scale: entries checked per second over a keyed Logbook of 1,000,000
entries, against reading the same rows alone, in the same run.

    .venv/bin/python benchmarks/logbook_verify.py                 # 1,000,000 entries
    .venv/bin/python benchmarks/logbook_verify.py --rows 200000 --repeat 3

Sets Django up itself. ``DATABASE_URL`` picks the database (default
postgres://postgres@127.0.0.1:5432/passport_bench_verify), created if missing and migrated. The
entries are loaded with COPY, chained and keyed (HMAC-SHA256 under the configured Logbook key)
by the product's own ``audit.services.EntryHasher``, and reused by the next run with the same
``--rows`` and key; ``--reload`` loads them again.

What is timed (the fastest of ``--repeat`` runs):
- **read alone (COPY)**: every row's columns as the walk's reader gets them (``audit.chain_scan``:
  COPY in windows, one text line per row), nothing done with them: the baseline;
- **read alone (cursor)**: the same columns through a server-side cursor as typed tuples (the
  plain reader, ``audit.integrity.entry_rows``), for comparison;
- **verify, 1 process** and **verify, N processes** (``--jobs``, default one per CPU as
  ``verify_logbook``): ``audit.integrity.logbook_verify``, the chain walk ``manage.py
  verify_logbook`` runs: every keyed hash recomputed, every link and the head checked. No
  evidence bucket is configured, so the checkpoints' part (a check per entry) is not in it;
- **verify, N processes, checkpoints**: the same with the observers ``verify_logbook`` adds (with
  an evidence bucket: the checkpoints' coverage and the entries' times), here given no
  checkpoints, so every entry's coverage and time is checked and all of them form one
  missing-checkpoint gap (no bucket is read);
- **verify, plain reader**: the same walk with the fast reader turned off (typed rows through a
  server-side cursor, each hashed by ``EntryHasher.digest``): what SQLite gets, and what
  PostgreSQL got before ``audit.chain_scan``: the before of the same run.

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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _logbook_entries import WORDS, chained, chained_columns, entries  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/passport_bench_verify"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Entries in the Logbook (default 1,000,000).")
    parser.add_argument("--repeat", type=int, default=2, help="Timed runs of each; the fastest counts (default 2).")
    parser.add_argument("--reload", action="store_true", help="Load the entries again even if they match.")
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="Processes of the parallel verify (default: CPUs).",
    )
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
    return chained(entries(rows, seed, _detail), key_id)


def _detail(rng: random.Random, action: str) -> dict[str, Any]:
    if action == "request.created":
        return {"reason": " ".join(rng.sample(WORDS, 4)), "ticket": f"INC-{rng.randrange(10**6):06d}"}
    if action.startswith("grant"):
        return {"username": f"rs-{rng.getrandbits(24):06x}", "command_id": f"{rng.getrandbits(64):016x}"}
    return {"note": rng.choice(WORDS), "é": "ü"}


def load(rows: int, key_id: str) -> None:
    from django.db import connection, transaction

    from audit.models import LogbookEntry, LogbookHead

    started = time.monotonic()
    last_hash, last_at = "", None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL passport.logbook_truncate = 'allow'")
        cursor.execute("TRUNCATE audit_logbookentry, audit_logbookhead RESTART IDENTITY")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        columns = (*chained_columns(), "key_id")
        with cursor.cursor.copy(f"COPY audit_logbookentry ({', '.join(columns)}) FROM STDIN") as copy:
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


def read_cursor() -> int:
    """Every row's columns through the plain reader (a server-side cursor), nothing done with them."""
    from django.db import transaction

    from audit.integrity import entry_rows

    count = 0
    with transaction.atomic():
        for _ in entry_rows(20_000):
            count += 1
    return count


def read_copy() -> int:
    """Every row's columns as the walk's reader gets them (COPY text lines), nothing done with them."""
    from django.db import connection, transaction

    from audit.chain_scan import _FULL, _lines

    count = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for _ in _lines(cursor.cursor, _FULL, 0, 2**63 - 1):
            count += 1
    return count


def verify_observed(jobs: int) -> Any:
    """The walk with the observers of ``verify_logbook`` with an evidence bucket, given no checkpoints:
    every entry's coverage and time is still checked (all of them come out missing, one gap)."""
    from audit.anchor.coverage import CheckpointCoverage
    from audit.anchor.entry_times import EntryObservers, EntryTimes
    from audit.integrity import logbook_verify

    report = logbook_verify(jobs=jobs, observer=EntryObservers(CheckpointCoverage([]), EntryTimes([])))
    kinds = [problem.kind for problem in report.problems]
    assert kinds == ["missing-checkpoint"] and report.entries > 0, kinds
    return report.entries


def verify_plain() -> Any:
    """The walk with the fast reader off: typed rows, each hashed by EntryHasher.digest."""
    from audit import chain_scan
    from audit.integrity import logbook_verify

    supported = chain_scan.fast_scan_supported
    chain_scan.fast_scan_supported = lambda connection: False
    try:
        return logbook_verify()
    finally:
        chain_scan.fast_scan_supported = supported


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

    timed: dict[str, list[float]] = {"copy": [], "cursor": [], "one": [], "many": [], "observed": [], "plain": []}
    for _ in range(args.repeat):
        for name, run in (
            ("copy", read_copy),
            ("cursor", read_cursor),
            ("one", lambda: logbook_verify(jobs=1)),
            ("many", lambda: logbook_verify(jobs=args.jobs)),
            ("observed", lambda: verify_observed(args.jobs)),
            ("plain", verify_plain),
        ):
            started = time.perf_counter()
            result = run()
            timed[name].append(time.perf_counter() - started)
            if isinstance(result, int):
                assert result == args.rows, result
            else:
                assert result.intact and result.entries == args.rows, (result.problem_count, result.problems[:3])
    best = {name: min(times) for name, times in timed.items()}
    rate = args.rows / min(best["one"], best["many"])
    print(f"{args.rows:,} keyed entries, fastest of {args.repeat}")
    for name, label in (
        ("copy", "read alone (COPY, the walk's reader)"),
        ("cursor", "read alone (server-side cursor)"),
        ("one", "verify, 1 process"),
        ("many", f"verify, {args.jobs} processes"),
        ("observed", f"verify, {args.jobs} processes, checkpoints"),
        ("plain", "verify, plain reader (before)"),
    ):
        print(f"{label:38s} {best[name]:7.2f} s  {args.rows / best[name]:10,.0f} entries/s")
    print(
        f"verify / read alone (COPY): 1 process {best['one'] / best['copy']:.2f}x, "
        f"{args.jobs} processes {best['many'] / best['copy']:.2f}x; plain reader (before) "
        f"{best['plain'] / best['copy']:.2f}x"
    )
    print(f"plain reader (before) / fastest verify: {best['plain'] / min(best['one'], best['many']):.2f}x")
    print(f"Goal (issue #16): at least 200,000 entries/s: {'met' if rate >= 200_000 else 'NOT met'} ({rate:,.0f}/s).")


if __name__ == "__main__":
    main()
