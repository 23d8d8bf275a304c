"""Helpers for the anchored-Logbook tests: the command's exit code, and an attacker who rewrites
entries behind the chain's back (the evidence bucket fixtures are in conftest)."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from audit.models import LogbookEntry, LogbookHead
from audit.services import EntryHasher, canonical_time
from tests.audit.conftest import raw_sql


def verify_code() -> tuple[int, str]:
    """Run ``verify_logbook``: its exit code and everything it said."""
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_logbook", stdout=out, stderr=err)
    except CommandError as failure:
        return failure.returncode, out.getvalue() + err.getvalue() + str(failure)
    return 0, out.getvalue() + err.getvalue()


def rehash_from(entries: list[LogbookEntry], *, prev_hash: str, key_id: str, key: bytes | None = None) -> str:
    """Rewrite ``entries`` as one consistent chain after ``prev_hash``, as an attacker with the
    database would: with plain SHA-256 (``key_id`` legacy-sha256) or an HMAC under ``key``
    (the right one, or a guess). Moves LogbookHead to the new tip. Returns the tip's hash."""
    for entry in entries:
        keys = {key_id: key.decode()} if key is not None else {}
        with override_settings(PASSPORT_LOGBOOK_KEYS=keys):
            digest = EntryHasher().digest(
                key_id=key_id,
                prev_hash=prev_hash,
                created_at=canonical_time(entry.created_at),
                actor_id=entry.actor_id,
                actor_label=entry.actor_label,
                action=entry.action,
                account_id=entry.account_id,
                request_id=entry.request_id,
                instance_ids=entry.instance_ids,
                detail=entry.detail,
            )
        raw_sql(
            "UPDATE audit_logbookentry SET prev_hash = %s, hash = %s, key_id = %s WHERE id = %s",
            [prev_hash, digest, key_id, entry.pk],
        )
        prev_hash = digest
    if entries:
        LogbookHead.objects.filter(pk=1).update(last_hash=prev_hash, last_entry_id=entries[-1].pk)
    return prev_hash
