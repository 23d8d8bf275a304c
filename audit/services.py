"""Appending to the Logbook. Nothing here updates or deletes an entry."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import connections, transaction
from django.utils import timezone

from audit.models import LogbookEntry, LogbookHead
from audit.origin import CLI_TOKEN_KEY, logbook_cli_token
from core.text import storable

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# How far hosts' clocks may differ. An entry is never dated after the tip (LogbookHead's time),
# but never by a head time beyond the clock plus this either: that row is signed by nothing. And
# verify_logbook takes times running backwards by more than this, or an entry dated more than
# this after the checkpoint that signed it, for a misdated entry (audit.anchor.entry_times).
LOGBOOK_CLOCK_SKEW = timedelta(minutes=1)
# Written, just before the entries it concerns, when LogbookHead's time was beyond that.
HEAD_TIME_REFUSED = "logbook.head_time_refused"
# Entries written before keyed hashes: plain SHA-256 (passport_portal.env refuses it as a key id).
LEGACY_KEY_ID = "legacy-sha256"


class AccountLike(Protocol):
    """An AWS account as the Logbook sees it: only its id. The Logbook sits below ``accounts``."""

    @property
    def account_id(self) -> str: ...


def canonical_time(moment: datetime) -> str:
    """The timestamp as it is hashed: ISO 8601 in UTC, whatever zone the database hands back."""
    return moment.astimezone(UTC).isoformat()


class UnknownLogbookKey(LookupError):
    """An entry names a key id that is not configured (PASSPORT_LOGBOOK_KEY / _OLD_KEYS)."""


def logbook_current_key_id() -> str:
    return str(settings.PASSPORT_LOGBOOK_KEY_ID)


def logbook_key_secret(key_id: str) -> bytes:
    """The secret of the Logbook key ``key_id`` (raises UnknownLogbookKey); never logged or stored."""
    keys: dict[str, str] = settings.PASSPORT_LOGBOOK_KEYS
    try:
        return keys[key_id].encode()
    except KeyError:
        raise UnknownLogbookKey(key_id) from None


# One encoder for every digest (json.dumps would build a new one per call); same output.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
# The same encoding for a walk that assembles an entry's canonical bytes itself (audit.copy_text).
canonical_json = _CANONICAL_JSON.encode


class EntryHasher:
    """Entry digests, each Logbook key's HMAC prepared once and copied per entry (a walk over the
    Logbook hashes millions of entries; an append prepares its key before taking the head lock).
    For one entry, with the key looked up afresh: ``EntryHasher().digest(...)``."""

    def __init__(self) -> None:
        self._prepared: dict[str, hmac.HMAC] = {}

    def prepare(self, key_id: str) -> None:
        """Look the key up now (raises UnknownLogbookKey), so hashing later only copies it."""
        if key_id != LEGACY_KEY_ID and key_id not in self._prepared:
            self._prepared[key_id] = hmac.new(logbook_key_secret(key_id), digestmod=hashlib.sha256)

    def prepared(self, key_id: str) -> hmac.HMAC:
        """The HMAC of a keyed ``key_id`` with nothing hashed yet (raises UnknownLogbookKey): copy it,
        never update it. For a walk that builds the canonical bytes itself (``audit.copy_text``)."""
        self.prepare(key_id)
        return self._prepared[key_id]

    def digest(
        self,
        key_id: str,
        prev_hash: str,
        created_at: str,
        actor_id: int | None,
        actor_label: str,
        action: str,
        account_id: str,
        request_id: int | None,
        instance_ids: str,
        detail: dict[str, Any],
    ) -> str:
        """The hash of one entry: every field that matters, in a canonical JSON form.

        HMAC-SHA256 under the Logbook key ``key_id`` (which is hashed too); for ``legacy-sha256``,
        the plain SHA-256 that entries written before keyed hashes carry.
        """
        fields: dict[str, Any] = {
            "prev": prev_hash,
            "at": created_at,
            "actor_id": actor_id,
            "actor": actor_label,
            "action": action,
            "account": account_id,
            "request": request_id,
            "instances": instance_ids,
            "detail": detail,
        }
        if key_id == LEGACY_KEY_ID:
            return hashlib.sha256(_CANONICAL_JSON.encode(fields).encode()).hexdigest()
        fields["key"] = key_id
        prepared = self._prepared.get(key_id)
        if prepared is None:
            self.prepare(key_id)
            prepared = self._prepared[key_id]
        mac = prepared.copy()
        mac.update(_CANONICAL_JSON.encode(fields).encode())
        return mac.hexdigest()


def _references_checked() -> None:
    """Check now the references the caller's transaction has written so far, not at its commit.

    Django's foreign keys are deferred in PostgreSQL: a row that refers to a person or an account
    (a request, a membership) takes FOR KEY SHARE on theirs when its transaction commits, by then
    holding the Logbook's head. A site admin changing that row's key (a new username or account
    id, a unique column: FOR UPDATE) and then appending its own entries waits for the head while
    the commit waits for it: a deadlock. Checked here, before the head, that lock comes first
    (``requests_app.services.lifecycle``'s lock order). The checks are those the commit would have
    run, so they cost one round trip; the constraints are deferred again for what follows (every
    deferrable one is a foreign key, initially deferred: Django's ``check_constraints`` does the same).
    """
    connection = connections[LogbookHead.objects.db]
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE; SET CONSTRAINTS ALL DEFERRED")


def _head_lock() -> LogbookHead:
    head = LogbookHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        LogbookHead.objects.get_or_create(pk=1, defaults={"last_hash": GENESIS_HASH})
        head = LogbookHead.objects.select_for_update().get(pk=1)
    return head


_ENTRY_COLUMNS = (
    "created_at, actor_id, actor_label, action, account_id, request_id, instance_ids, detail, prev_hash, hash, key_id"
)
_ENTRY_VALUES = "(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)"
# The entries' ids come from the sequence in VALUES order, under the head lock: the last is the highest.
_INSERT_AND_MOVE_HEAD = (
    "WITH entry AS (INSERT INTO audit_logbookentry ({columns}) VALUES {values} RETURNING id) "
    "UPDATE audit_logbookhead SET last_hash = %s, last_entry_id = (SELECT max(id) FROM entry), last_created_at = %s "
    "WHERE id = 1 RETURNING last_entry_id"
)


def _insert_and_move_head(entries: list[dict[str, Any]]) -> int:
    """Insert the entries and move the head to the last; on PostgreSQL in one statement (one round
    trip while the head is locked). Returns the last entry's id."""
    connection = connections[LogbookEntry.objects.db]
    last = entries[-1]
    if connection.vendor != "postgresql":
        for values in entries:
            entry = LogbookEntry.objects.create(**values)
        LogbookHead.objects.filter(pk=1).update(
            last_hash=last["hash"], last_entry_id=entry.pk, last_created_at=last["created_at"]
        )
        return int(entry.pk)
    params = [json.dumps(value) if name == "detail" else value for values in entries for name, value in values.items()]
    sql = _INSERT_AND_MOVE_HEAD.format(columns=_ENTRY_COLUMNS, values=", ".join([_ENTRY_VALUES] * len(entries)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, last["hash"], last["created_at"]])
        row = cursor.fetchone()
    return int(row[0])


def _jsonb_float(text: str) -> float | int:
    """A JSON number as PostgreSQL's jsonb will give it back: no negative zero, and an integral
    number written with an exponent (1e+16, 1e+300) in full, which reads back as an int."""
    value = float(text)
    if value == 0:
        return 0.0
    if ("e" in text or "E" in text) and value.is_integer():
        return int(value)
    return value


def _stored_json(detail: dict[str, Any]) -> Any:
    """``detail`` as it is stored and read back: JSON types only (others as their text), numbers as
    jsonb keeps them, NaN and the infinities (which JSON lacks) as the strings "NaN", "Infinity";
    NUL and surrogates, which jsonb refuses, escaped in every key and string (``core.text.storable``),
    so no entry is lost to what it quotes."""
    text = json.dumps(detail, default=str)
    stored = json.loads(text, parse_float=_jsonb_float, parse_constant=str)
    # json.dumps writes both as \u escapes (lowercase hex); any other text needs no walk.
    return _storable_json(stored) if "\\u0000" in text or "\\ud" in text else stored


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(key): _storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable_json(item) for item in value]
    return value


def logbook_append(
    *,
    action: str,
    actor: AbstractUser | None,
    account: AccountLike | str | None = None,
    request_id: int | None = None,
    instance_ids: Iterable[str] = (),
    detail: dict[str, Any] | None = None,
) -> LogbookEntry:
    """Append one entry to the chain.

    Runs in the caller's transaction when there is one, so the record and the change it
    records commit or roll back together. The head row lock serializes appenders, so it is
    taken last: everything that does not depend on the tip is ready before it (the references the
    transaction wrote so far checked too: ``_references_checked``), and under it there are two
    statements (lock, then insert-and-move-head) and one HMAC.

    Inside ``logbook_batch()`` the entry is only queued (and returned unsaved, without an id):
    the batch appends it with the others at its end.

    Written on behalf of a request the CLI's bearer token authenticated, the detail names the
    token (``cli_token``: its id; ``audit.origin``), so the record tells it from the browser.
    """
    cli_token = logbook_cli_token()
    if cli_token is not None:
        detail = {**(detail or {}), CLI_TOKEN_KEY: cli_token}
    account_id = account if isinstance(account, str) else (account.account_id if account is not None else "")
    # Stored space-delimited, so a blank or padded id would break the containment match.
    ids = " ".join(instance_id.strip() for instance_id in instance_ids if instance_id and instance_id.strip())
    values: dict[str, Any] = {  # in the order of _INSERT_AND_MOVE_HEAD's columns
        "created_at": timezone.now(),
        # By id: typed against AbstractUser here, the Logbook does not import the project's User.
        "actor_id": actor.pk if actor is not None else None,
        "actor_label": actor.username if actor is not None else "system",
        "action": action,
        "account_id": account_id,
        "request_id": request_id,
        "instance_ids": f" {ids} " if ids else "",
        # Round-trip through JSON so the stored detail hashes the same when read back.
        "detail": _stored_json(detail or {}),
        "prev_hash": "",
        "hash": "",
        "key_id": logbook_current_key_id(),
    }
    queued = _batch.get()
    if queued is not None:
        queued.append(values)
        return LogbookEntry(**values)
    entry_id = _append_entries([values])
    entry = LogbookEntry(id=entry_id, **values)
    entry._state.adding = False
    entry._state.db = LogbookEntry.objects.db
    return entry


# The entries a logbook_batch() of this thread (or task) has queued, or None outside one.
_batch: ContextVar[list[dict[str, Any]] | None] = ContextVar("logbook_batch", default=None)


@contextmanager
def logbook_batch() -> Iterator[list[dict[str, Any]]]:
    """Queue every ``logbook_append`` of the block and append them all at its end, in order, under
    one hold of the head lock: a sweep that ends many items in one transaction takes the lock once,
    just before its commit, instead of once per item (holding it from the first item on).

    It also keeps the lock order (``requests_app.services.lifecycle``): a transaction that changes
    people and then, through the signals, ends their access takes the request rows before the head.

    Use it inside the transaction of the changes the entries record. The block gets the queue: a
    caller whose savepoint rolls back drops what was queued since (``del queue[mark:]``). Nothing
    is written when the block raises. Inside another batch, the block's entries join the outer
    batch's queue at its end, and are appended with those."""
    outer = _batch.get()
    queue: list[dict[str, Any]] = []
    token = _batch.set(queue)
    try:
        yield queue
    finally:
        _batch.reset(token)
    if queue:
        if outer is not None:
            outer.extend(queue)
        else:
            _append_entries(queue)


def _append_entries(entries: list[dict[str, Any]]) -> int:
    """Chain and store ``entries`` (their values, oldest first) after the head; returns the last id."""
    hasher = EntryHasher()
    for key_id in {values["key_id"] for values in entries}:
        hasher.prepare(key_id)
    _references_checked()
    with transaction.atomic():
        head = _head_lock()
        prev_hash, last_created_at = head.last_hash, head.last_created_at
        now = timezone.now()
        if last_created_at is not None and last_created_at > now + LOGBOOK_CLOCK_SKEW:
            refused = _head_time_refused(head_entry_id=head.last_entry_id, head_at=last_created_at, now=now)
            entries = [refused, *entries]
            hasher.prepare(refused["key_id"])
            last_created_at = refused["created_at"]
        for values in entries:
            # The Logbook's clock never runs backwards. Hosts' clocks differ a little, and with
            # time and id rising together a time range is an id range (see selectors).
            if last_created_at is not None and values["created_at"] < last_created_at:
                values["created_at"] = last_created_at
            values["prev_hash"] = prev_hash
            values["hash"] = prev_hash = hasher.digest(
                values["key_id"],
                prev_hash,
                canonical_time(values["created_at"]),
                values["actor_id"],
                values["actor_label"],
                values["action"],
                values["account_id"],
                values["request_id"],
                values["instance_ids"],
                values["detail"],
            )
            last_created_at = values["created_at"]
        return _insert_and_move_head(entries)


def _head_time_refused(*, head_entry_id: int | None, head_at: datetime, now: datetime) -> dict[str, Any]:
    """The entry that records a head time in the future, dated no later than the clock allows.

    Nothing signs LogbookHead: someone with the database alone could move its time forward so
    that the next entries are hashed with a time of their choosing (out of reach of a reviewer's
    time filter). Such a head time is not taken; the tip entry's own time, which its hash covers,
    is the floor instead. That it happened is evidence in itself (or a host's clock ran ahead):
    it goes on the record, and verify_logbook names it."""
    tip = LogbookEntry.objects.filter(pk=head_entry_id) if head_entry_id is not None else LogbookEntry.objects.none()
    tip_at = tip.values_list("created_at", flat=True).first()
    logger.warning(
        "LogbookHead's time %s is ahead of the clock (%s): not taken; %s written",
        canonical_time(head_at),
        canonical_time(now),
        HEAD_TIME_REFUSED,
    )
    return {  # in the order of _INSERT_AND_MOVE_HEAD's columns
        "created_at": min(max(tip_at, now), now + LOGBOOK_CLOCK_SKEW) if tip_at is not None else now,
        "actor_id": None,
        "actor_label": "system",
        "action": HEAD_TIME_REFUSED,
        "account_id": "",
        "request_id": None,
        "instance_ids": "",
        "detail": _stored_json(
            {
                "head_entry_id": head_entry_id,
                "head_at": canonical_time(head_at),
                "tip_at": canonical_time(tip_at) if tip_at is not None else None,
                "clock_at": canonical_time(now),
            }
        ),
        "prev_hash": "",
        "hash": "",
        "key_id": logbook_current_key_id(),
    }


def logbook_export_record(*, actor: AbstractUser, fmt: str, up_to_id: int, filters: dict[str, Any]) -> None:
    """Taking a copy of the Logbook is itself recorded: by whom, in which format, up to which entry, filtered how."""
    logbook_append(action="logbook.exported", actor=actor, detail={"format": fmt, "up_to_id": up_to_id, **filters})
