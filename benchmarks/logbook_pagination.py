#!/usr/bin/env python
"""The Logbook at scale: keyset pages and filtered pages, as ratios to baselines from the same run.

    .venv/bin/python benchmarks/logbook_pagination.py            # 1,000,000 entries
    .venv/bin/python benchmarks/logbook_pagination.py --rows 100000 --repeat 9

Sets Django up itself. ``DATABASE_URL`` picks the database (default
postgres://postgres@127.0.0.1:5432/passport_bench), which is created if missing and migrated.
The entries are bulk-loaded with COPY (bulk_create in batches elsewhere) and reused by the
next run with the same ``--rows``.

The loaded entries form a valid hash chain (cheap to compute while generating them), so
``verify_logbook``'s walk is timed too; the page timings would be the same without it.

Baselines, measured in this run on this data:
- a single-row primary-key lookup: the floor of any query through the ORM;
- OFFSET pagination at the same depth as the deep keyset page.
Figures are medians; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _logbook_entries import WORDS, chained, chained_columns, entries  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/passport_bench"
PAGE = 50


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="Entries to load (default 1,000,000).")
    parser.add_argument("--repeat", type=int, default=7, help="Timed runs per measurement; the median is shown.")
    parser.add_argument("--reload", action="store_true", help="Load the entries again even if the count matches.")
    parser.add_argument("--explain", action="store_true", help="Print PostgreSQL's plan for each page query.")
    parser.add_argument("--skip-verify", action="store_true", help="Do not time verify_logbook's walk.")
    parser.add_argument("--skip-export", action="store_true", help="Do not time a full JSON Lines export.")
    return parser.parse_args()


# --- Setting up -------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` when it does not exist yet."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    if "postgresql" not in config["ENGINE"]:
        return
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        "dbname": "postgres",
    }
    with psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
            print(f"Created database {config['NAME']}.")


def setup_django() -> str:
    url = os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "passport_portal.settings")
    os.environ.setdefault("PASSPORT_LOG_LEVEL", "WARNING")
    # As in production: no per-query bookkeeping, which DEBUG adds.
    os.environ.setdefault("PASSPORT_DEBUG", "false")
    ensure_database(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


# --- Loading ----------------------------------------------------------------------------


def generate(rows: int, seed: int = 42) -> Iterator[tuple[Any, ...]]:
    """Entries spread over the last year, chained like the real ones."""
    # Rows inserted without a key id are the legacy, unkeyed kind.
    return chained(entries(rows, seed, _detail), "legacy-sha256")


def _detail(rng: random.Random, action: str) -> dict[str, Any]:
    if action == "request.created":
        return {
            "reason": " ".join(rng.sample(WORDS, 4)),
            "ticket": f"INC-{rng.randrange(1, 1_000_000):06d}",
            "minutes": rng.choice((30, 60, 120, 240)),
        }
    if action.startswith("grant"):
        return {"username": f"rs-{rng.getrandbits(24):06x}", "command_id": f"{rng.getrandbits(64):016x}"}
    return {"note": rng.choice(WORDS)}


def load(rows: int) -> None:
    import json

    from django.db import connection, transaction

    from audit.models import LogbookEntry, LogbookHead

    started = time.monotonic()
    postgres = connection.vendor == "postgresql"
    columns = chained_columns()
    last_hash, last_at = "", None
    with transaction.atomic(), connection.cursor() as cursor:
        if postgres:
            # The Logbook refuses TRUNCATE unless the session asks for it by name.
            cursor.execute("SET LOCAL passport.logbook_truncate = 'allow'")
            cursor.execute("TRUNCATE audit_logbookentry, audit_logbookhead RESTART IDENTITY")
            # Building the GIN indexes once after the load beats updating them row by row.
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE tablename = 'audit_logbookentry' AND indexdef LIKE %s",
                ["% USING gin %"],
            )
            gin_indexes = cursor.fetchall()
            for name, _ in gin_indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
            with cursor.cursor.copy(f"COPY audit_logbookentry ({', '.join(columns)}) FROM STDIN") as copy:
                for n, row in enumerate(generate(rows), 1):
                    copy.write_row((*row[:7], json.dumps(row[7]), *row[8:]))
                    last_hash, last_at = row[9], row[0]
                    if n % 200_000 == 0:
                        print(f"  {n:,} rows copied ({time.monotonic() - started:.0f} s)")
            print(f"  building {len(gin_indexes)} GIN indexes ({time.monotonic() - started:.0f} s)")
            for _, definition in gin_indexes:
                cursor.execute(definition)
        else:
            LogbookEntry.objects.all().delete()
            LogbookHead.objects.all().delete()
            batch: list[LogbookEntry] = []
            for row in generate(rows):
                batch.append(LogbookEntry(**dict(zip(columns, row, strict=True))))
                last_hash, last_at = row[9], row[0]
                if len(batch) == 5000:
                    LogbookEntry.objects.bulk_create(batch)
                    batch.clear()
            LogbookEntry.objects.bulk_create(batch)
        last_id = LogbookEntry.objects.order_by("-id").values_list("id", flat=True).first()
        LogbookHead.objects.update_or_create(
            pk=1, defaults={"last_hash": last_hash, "last_entry_id": last_id, "last_created_at": last_at}
        )
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE audit_logbookentry")
    print(f"Loaded {rows:,} entries in {time.monotonic() - started:.1f} s.")


# --- Measuring --------------------------------------------------------------------------


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm the cache and the connection
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def explain(label: str, queryset: Any) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    plan = queryset.explain(analyze=True)
    print(f"\n--- plan: {label}\n{plan}")


def rss_kib(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> None:
    # Linux: resets VmHWM, so the peak read afterwards belongs to what ran in between.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    args = parse_args()
    url = setup_django()

    from django.db import connection

    from audit.models import LogbookEntry
    from audit.selectors import LogbookFilters, logbook_list, logbook_page

    count = LogbookEntry.objects.count()
    if count != args.rows or args.reload:
        print(f"Loading {args.rows:,} entries into {connection.settings_dict['NAME']} ({connection.vendor})…")
        load(args.rows)
    else:
        print(f"Reusing {count:,} entries in {connection.settings_dict['NAME']} ({connection.vendor}).")

    auditor = SimpleNamespace(is_authenticated=True, is_superuser=True, is_auditor=True)
    ids_desc = LogbookEntry.objects.order_by("-id").values_list("id", flat=True)
    depth = int(args.rows * 0.9) // PAGE * PAGE
    deep_cursor = ids_desc[depth - 1]  # the last id of the page before the deep one
    sample_entry = LogbookEntry.objects.filter(pk=ids_desc[depth]).get()
    account = sample_entry.account_id or "100000000000"
    instance = sample_entry.instance_id_list[0] if sample_entry.instance_ids else ""
    ticket_entry = LogbookEntry.objects.filter(action="request.created").order_by("id").first()
    rare_text = ticket_entry.detail["ticket"] if ticket_entry else "INC-000001"

    def page(filters: LogbookFilters | None = None, **cursor: int) -> Callable[[], Any]:
        chosen = filters or LogbookFilters()
        return lambda: logbook_page(user=auditor, filters=chosen, size=PAGE, **cursor).entries

    pk_id = ids_desc[depth]
    offset_rows = lambda: list(LogbookEntry.objects.order_by("-id")[depth : depth + PAGE])  # noqa: E731
    keyset_rows = page(before=deep_cursor)
    assert [e.pk for e in offset_rows()] == [e.pk for e in keyset_rows()], "keyset and OFFSET disagree"

    middle = LogbookEntry.objects.filter(pk=ids_desc[args.rows // 2]).values_list("created_at", flat=True).get()
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("first page (50, newest)", page()),
        (f"keyset page at depth {depth:,}", keyset_rows),
        ("account filter, first page", page(LogbookFilters(account_id=account))),
        (
            f"account filter, keyset at depth {depth:,}",
            page(LogbookFilters(account_id=account), before=deep_cursor),
        ),
        ("person filter, first page", page(LogbookFilters(person="user042"))),
        ("request filter", page(LogbookFilters(request_id=sample_entry.request_id or 1))),
        ("instance filter (one id)", page(LogbookFilters(instance_id=instance))),
        ("action filter (rare), first page", page(LogbookFilters(action="grant.failed"))),
        ("time window (1 day mid-history)", page(LogbookFilters(since=middle, until=middle + timedelta(days=1)))),
        (f"text search, rare ({rare_text})", page(LogbookFilters(text=rare_text))),
        ("text search, common ('nginx')", page(LogbookFilters(text="nginx"))),
        ("text + account filter", page(LogbookFilters(text="nginx", account_id=account))),
    ]

    if args.explain:
        explain("deep keyset", logbook_list(user=auditor, filters=LogbookFilters()).filter(id__lt=deep_cursor)[:51])
        explain("instance", logbook_list(user=auditor, filters=LogbookFilters(instance_id=instance))[:51])
        explain("text rare", logbook_list(user=auditor, filters=LogbookFilters(text=rare_text))[:51])
        explain("text common", logbook_list(user=auditor, filters=LogbookFilters(text="nginx"))[:51])
        explain("person", logbook_list(user=auditor, filters=LogbookFilters(person="user042"))[:51])
        window = LogbookFilters(since=middle, until=middle + timedelta(days=1))
        explain("time window", logbook_list(user=auditor, filters=window)[:51])

    baseline_pk = median_ms(lambda: LogbookEntry.objects.filter(pk=pk_id).first(), args.repeat)
    offset_ms = median_ms(offset_rows, args.repeat)
    print(f"\nDatabase: {url.split('@')[-1]}   entries: {args.rows:,}   page: {PAGE}   repeat: {args.repeat} (median)")
    print(f"Baseline A: primary-key lookup of one entry        {baseline_pk:9.2f} ms")
    print(f"Baseline B: OFFSET {depth:,} LIMIT {PAGE:<6}               {offset_ms:9.2f} ms\n")
    print(f"{'measurement':<44}{'ms':>10}{'x pk lookup':>14}{'x OFFSET':>11}")
    for label, fn in cases:
        ms = median_ms(fn, args.repeat)
        print(f"{label:<44}{ms:10.2f}{ms / baseline_pk:14.1f}{ms / offset_ms:11.3f}")

    render_page(args.repeat, baseline_pk, deep_cursor)

    if not args.skip_export:
        time_export(args.rows)
    if not args.skip_verify:
        time_verify(args.rows)


def render_page(repeat: int, baseline_pk: float, deep_cursor: int) -> None:
    """The whole request: middleware, session, queries, template, for a page and the API."""
    from django.test import Client

    from accounts.models import User

    auditor, _ = User.objects.get_or_create(username="bench-auditor", defaults={"is_auditor": True})
    client = Client()
    client.force_login(auditor)
    print()
    for label, url in [
        ("HTTP /logbook/ (rendered, newest)", "/logbook/"),
        ("HTTP /logbook/?before=<deep>", f"/logbook/?before={deep_cursor}"),
        ("HTTP /logbook/?q=nginx (htmx partial)", "/logbook/?q=nginx"),
        ("HTTP /api/logbook/?before=<deep>", f"/api/logbook/?before={deep_cursor}"),
    ]:
        headers = {"HTTP_HX_REQUEST": "true"} if "htmx" in label else {}
        response = client.get(url, **headers)
        assert response.status_code == 200, (url, response.status_code)
        ms = median_ms(lambda url=url, headers=headers: client.get(url, **headers), repeat)
        print(f"{label:<44}{ms:10.2f}{ms / baseline_pk:14.1f}")


def time_export(rows: int) -> None:
    from audit.exports import LogbookExport
    from audit.selectors import LogbookFilters

    auditor = SimpleNamespace(is_authenticated=True, is_superuser=True, is_auditor=True)
    reset_peak_rss()
    before = rss_kib("VmRSS")
    started = time.monotonic()
    size = 0
    for chunk in LogbookExport(user=auditor, filters=LogbookFilters(), fmt="jsonl").sync_chunks():
        size += len(chunk)
    elapsed = time.monotonic() - started
    peak = rss_kib("VmHWM")
    print(
        f"\nJSON Lines export of all {rows:,} entries: {elapsed:.1f} s, {size / 1e6:.0f} MB written, "
        f"peak RSS +{max(peak - before, 0) / 1024:.0f} MiB over the {before / 1024:.0f} MiB before"
    )


def time_verify(rows: int) -> None:
    from audit.integrity import logbook_verify

    reset_peak_rss()
    before = rss_kib("VmRSS")
    started = time.monotonic()
    report = logbook_verify()
    elapsed = time.monotonic() - started
    peak = rss_kib("VmHWM")
    state = "intact" if report.intact else f"{report.problem_count} problems"
    print(
        f"verify_logbook walk of {report.entries:,} entries: {elapsed:.1f} s ({state}), "
        f"{report.entries / elapsed:,.0f} entries/s, peak RSS +{max(peak - before, 0) / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
