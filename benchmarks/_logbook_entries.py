"""What the Logbook benchmarks share (logbook_pagination.py, logbook_verify.py); not a benchmark itself.

``entries`` draws entries like the product's; ``chained`` links them into a hash chain as
``audit.services.logbook_append`` does, each hashed by the product's own ``EntryHasher``;
``chained_columns`` names a chained row's fields. The last two import the portal's code when
called, after the benchmark has set Django up.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

# created_at, actor_id, actor_label, action, account_id, request_id, instance_ids, detail
Entry = tuple[datetime, int | None, str, str, str, int | None, str, dict[str, Any]]

ACTIONS = [
    ("request.created", 12),
    ("request.approved", 10),
    ("request.provisioning", 10),
    ("grant.provisioning", 14),
    ("grant.ready", 14),
    ("request.active", 10),
    ("request.completing", 6),
    ("request.expiring", 4),
    ("grant.removed", 12),
    ("request.completed", 6),
    ("request.rejected", 1),
    ("request.create_denied", 1),
    ("grant.failed", 1),
    ("grant.provision_retry", 1),
    ("inventory.synced", 3),
    ("logbook.exported", 1),
]
WORDS = [
    *("disk", "full", "cpu", "alarm", "deploy", "rollback", "nginx", "postgres", "memory", "leak"),
    *("certificate", "renewal", "patch", "kernel", "backup", "restore", "log", "rotation", "latency"),
    *("spike", "cron", "job", "failing", "ssh", "hardening", "audit", "review"),
]


def entries(rows: int, seed: int, detail: Callable[[random.Random, str], dict[str, Any]]) -> Iterator[Entry]:
    """``rows`` entries drawn from ``seed``, one every 30 s or so up to now, actions weighted as in
    ``ACTIONS``; ``detail`` makes each entry's detail from the same random source and its action."""
    rng = random.Random(seed)
    accounts = [f"{100000000000 + n * 7919:012d}" for n in range(40)]
    people = [(1000 + n, f"user{n:03d}") for n in range(300)]
    instances = [f"i-{rng.getrandbits(68):017x}" for _ in range(20_000)]
    names = [name for name, _ in ACTIONS]
    weights = [weight for _, weight in ACTIONS]
    start = datetime.now(UTC) - timedelta(seconds=30 * rows)
    for n in range(rows):
        created_at = start + timedelta(seconds=30 * n, microseconds=rng.randrange(1_000_000))
        action = rng.choices(names, weights)[0]
        actor_id, actor_label = (None, "system") if rng.random() < 0.45 else rng.choice(people)
        account_id = rng.choice(accounts) if action != "logbook.exported" else ""
        request_id = rng.randrange(1, rows // 8 + 2) if action.startswith(("request", "grant")) else None
        picked = rng.sample(instances, rng.choice((1, 1, 1, 2, 3))) if action.startswith(("grant", "request")) else []
        instance_ids = f" {' '.join(picked)} " if picked else ""
        yield created_at, actor_id, actor_label, action, account_id, request_id, instance_ids, detail(rng, action)


def chained(entries: Iterable[Entry], key_id: str) -> Iterator[tuple[Any, ...]]:
    """Each entry followed by its ``prev_hash`` and its ``hash`` under the Logbook key ``key_id``."""
    from audit.services import GENESIS_HASH, EntryHasher, canonical_time

    hasher = EntryHasher()
    prev_hash = GENESIS_HASH
    for entry in entries:
        created_at, actor_id, actor_label, action, account_id, request_id, instance_ids, detail = entry
        digest = hasher.digest(
            key_id, prev_hash, canonical_time(created_at), actor_id, actor_label, action, account_id, request_id,
            instance_ids, detail,
        )  # fmt: skip
        yield (*entry, prev_hash, digest)
        prev_hash = digest


def chained_columns() -> tuple[str, ...]:
    """The Logbook's columns in a chained row's order: as ``audit.integrity`` reads them, but ``id``
    (the database's) and ``key_id`` (the same for every row, or the column's default)."""
    from audit.integrity import ENTRY_COLUMNS

    return tuple(name for name in ENTRY_COLUMNS if name not in ("id", "key_id"))
