"""Checkpoints the task refused to write, kept in the bucket all the same.

The checkpoint task never signs a head that is not the chain's tip (``checkpoints``): entries past
``LogbookHead`` mean the head was held back (or a row was slipped in past it), and signing it would
vouch for a chain without them. But a refusal that left nothing in the bucket would let someone
with the database alone stop the checkpoints with one stray row, let entries be written, then erase
them (the stray row too), move the head back and reset the id sequence, all inside the interval plus
the grace: no gap, and every checkpoint still agrees with the chain left. So each refusal writes a
signed object of its own, under Object Lock like a checkpoint: the head as the row named it (entry
and hash), the chain's highest entry then (id and hash) and the time.

``verify_logbook`` reports, from those objects:

- every refusal: the head disagreed with the chain then (**head**, exit 10), for good, like a head
  time refused, since appending moves the head with its entry in one transaction;
- a checkpoint or refusal written after it that names an entry before the highest one the refusal
  saw (**truncated**, exit 7): entries are never removed, so the chain ends no earlier than it did,
  and one that does had its newest entries erased since.

A refusal covers no entry (it vouches for no chain: the row past the head may be anything), so it
stands in for no checkpoint: missing checkpoints and gaps are judged as before.
"""

from __future__ import annotations

import secrets
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from audit.anchor.signing import REFUSAL_FORMAT, checkpoint_sign
from audit.anchor.storage import evidence_put
from audit.integrity import ChainProblem
from audit.services import canonical_time


@dataclass(frozen=True)
class Refusal:
    head_entry_id: int  # as LogbookHead named it
    head_hash: str
    tip_id: int  # the chain's highest entry then (0: none)
    tip_hash: str
    written_at: datetime
    object_key: str
    why: str


def refusal_write(*, head_entry_id: int, head_hash: str, tip_id: int, tip_hash: str, why: str, now: datetime) -> str:
    """Sign the refusal to the bucket; its object key. Raises EvidenceStoreError."""
    fields: dict[str, Any] = {
        "head_entry_id": head_entry_id,
        "head_hash": head_hash,
        "tip_id": tip_id,
        "tip_hash": tip_hash,
        "why": why[:500],
        "written_at": canonical_time(now),
    }
    object_key = f"{settings.PASSPORT_EVIDENCE_PREFIX}refused-{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.json"
    evidence_put(object_key, checkpoint_sign(fields, form=REFUSAL_FORMAT))
    return object_key


def refusal_from(fields: dict[str, Any], *, written_at: datetime, object_key: str) -> Refusal:
    """A refusal from its opened object's fields (``signing.checkpoint_open``)."""
    return Refusal(
        head_entry_id=fields["head_entry_id"],
        head_hash=fields["head_hash"],
        tip_id=fields["tip_id"],
        tip_hash=fields["tip_hash"],
        written_at=written_at,
        object_key=object_key,
        why=str(fields.get("why", "")),
    )


def refusal_problems(refusals: list[Refusal], signed: list[tuple[datetime, int, str]]) -> list[ChainProblem]:
    """What the refusals say: each one a **head** problem, and a **truncated** one when a later
    object in ``signed`` (written at, entry it names, its key: every checkpoint) or a later refusal
    names an entry before the highest the refusal saw."""
    later = sorted([*signed, *((refusal.written_at, refusal.tip_id, refusal.object_key) for refusal in refusals)])
    # lowest[i]: the object naming the lowest entry among later[i:].
    lowest: list[tuple[datetime, int, str]] = []
    for item in reversed(later):
        lowest.append(item if not lowest or item[1] < lowest[-1][1] else lowest[-1])
    lowest.reverse()
    times = [item[0] for item in later]
    problems: list[ChainProblem] = []
    for refusal in sorted(refusals, key=lambda refusal: refusal.written_at):
        at = canonical_time(refusal.written_at)
        problems.append(
            ChainProblem(
                "head",
                [refusal.head_entry_id],
                f"At {at} the checkpoint task refused to sign ({refusal.object_key}): LogbookHead named "
                f"#{refusal.head_entry_id}, the chain's highest entry was #{refusal.tip_id}. {refusal.why}",
            )
        )
        index = bisect_right(times, refusal.written_at)  # the objects written after it
        if index < len(lowest) and lowest[index][1] < refusal.tip_id:
            written_at, entry_id, object_key = lowest[index]
            problems.append(
                ChainProblem(
                    "truncated",
                    [entry_id, refusal.tip_id],
                    f"At {at} the chain went on to entry #{refusal.tip_id} (a refused checkpoint saw it), but "
                    f"{object_key}, written {canonical_time(written_at)}, names #{entry_id}: the entries after "
                    f"#{entry_id} that were there were removed since.",
                )
            )
    return problems
