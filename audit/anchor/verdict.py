"""The Logbook's verdict on itself: the newest ``logbook.verified`` or ``logbook.verification_failed``
entry, read back and checked under the Logbook key (``audit.anchor.status`` shows it; the runs
write it: ``audit.anchor.verification``).

A run that left checks out (``verify_logbook --chain-only``: no recordings) is **partial**: its entry
names the checks that ran and those skipped, and carries the last full run's verdict (its entry id,
whether intact, its exit code and kinds), so the page never reads "intact" from a run that did not
look at what the last full run found wrong. That carried verdict is hashed with the entry: editing it
breaks the entry's hash, and the newest entry not holding reads as NOT intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import F, Subquery
from django.db.models.functions import Coalesce, Greatest

from audit.genuine import logbook_entry_genuine
from audit.models import LogbookEntry
from audit.services import LEGACY_KEY_ID

# The verdict of each run, in the Logbook.
VERIFIED = "logbook.verified"
VERIFICATION_FAILED = "logbook.verification_failed"


@dataclass(frozen=True)
class FullRun:
    """The last full run's verdict, as a partial run's entry carries it."""

    entry_id: int
    # The page's verdict: genuine, this run found nothing, and (a partial run) neither did the last full run.
    intact: bool
    exit_code: int | None
    kinds: list[str]


@dataclass(frozen=True)
class LoggedVerdict:
    """The newest verification's entry in the Logbook, and whether its hash holds."""

    entry_id: int
    at: datetime
    genuine: bool  # its keyed hash holds: written by the portal, not inserted or edited
    intact: bool
    exit_code: int | None
    kinds: list[str]
    entries: int | None
    checkpoints: int | None
    verification_id: int | None
    checks: list[str]  # what the run checked ("chain", "checkpoints", the evidence checks'); [] before this was kept
    # A partial run (``verify_logbook --chain-only``): the checks it left out, and the verdict of the
    # last full run then (None: there was none), which stands for what it did not check.
    skipped: list[str]
    full_run: FullRun | None
    run_intact: bool  # genuine and this run found nothing (what a partial run says of what it checked)


def _newest_of(action: str) -> Subquery:
    # One probe of the (action, id) index per action.
    return Subquery(LogbookEntry.objects.filter(action=action).order_by("-id").values("id")[:1])


def _genuine(entry: LogbookEntry) -> bool:
    # Verification entries are never older than keyed hashes: an unkeyed one is no one's.
    return entry.key_id != LEGACY_KEY_ID and logbook_entry_genuine(entry)


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def logged_verdict() -> LoggedVerdict | None:
    """The newest verification entry of the Logbook (one query), or None when there is none."""
    newest = Greatest(Coalesce(_newest_of(VERIFIED), 0), Coalesce(_newest_of(VERIFICATION_FAILED), 0))
    entry = LogbookEntry.objects.alias(newest=newest).filter(id=F("newest")).first()
    if entry is None:
        return None
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    genuine = _genuine(entry)
    partial = genuine and detail.get("partial") is True
    full_run = _full_run(detail.get("last_full_run")) if partial else None
    run_intact = genuine and entry.action == VERIFIED
    return LoggedVerdict(
        entry_id=entry.pk,
        at=entry.created_at,
        genuine=genuine,
        intact=run_intact and (full_run is None or full_run.intact),
        exit_code=_number(detail.get("exit_code")),
        kinds=_texts(detail.get("kinds")),
        entries=_number(detail.get("entries")),
        checkpoints=_number(detail.get("checkpoints")),
        verification_id=_number(detail.get("verification_id")),
        checks=_texts(detail.get("checks")),
        skipped=_texts(detail.get("skipped")) if partial else [],
        full_run=full_run,
        run_intact=run_intact,
    )


def _texts(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _full_run(value: Any) -> FullRun | None:
    if not isinstance(value, dict) or _number(value.get("entry_id")) is None:
        return None
    return FullRun(
        entry_id=int(value["entry_id"]),
        intact=value.get("intact") is True,
        exit_code=_number(value.get("exit_code")),
        kinds=_texts(value.get("kinds")),
    )


def last_full_run() -> dict[str, Any] | None:
    """What a partial run (``verify_logbook --chain-only``) carries in its entry of the last full
    run's verdict, so the page keeps showing it: from the newest verification entry, or from what
    that entry carries when it is a partial run too. None when there was no full run."""
    verdict = logged_verdict()
    if verdict is None:
        return None
    if verdict.skipped:
        run = verdict.full_run
    else:
        run = FullRun(verdict.entry_id, verdict.run_intact, verdict.exit_code, verdict.kinds)
    if run is None:
        return None
    return {"entry_id": run.entry_id, "intact": run.intact, "exit_code": run.exit_code, "kinds": run.kinds}
