"""Is one Logbook entry as the portal wrote it? Its hash recomputed under the key it names, and
that key one that may sign where the entry stands (``audit.key_order``).

For what a page or a download relies on from a single entry without walking the chain: the last
verification's verdict (``audit.anchor.verdict``), the digest that sealed a recording
(``terminal.sealing``). An insider who can write rows but does not hold the Logbook key can edit
an entry, not make its hash hold again; ``verify_logbook`` names the same entries as edited.
"""

from __future__ import annotations

import hmac

from django.conf import settings

from audit.key_order import KeyOrder
from audit.models import LogbookEntry
from audit.selectors import logbook_entries_after
from audit.services import LEGACY_KEY_ID, EntryHasher, UnknownLogbookKey, canonical_time

_LINKS_BATCH = 2000


def logbook_entry_genuine(entry: LogbookEntry) -> bool:
    """Does the entry's hash hold, under a key that may sign it where it stands? An unkeyed
    (``legacy-sha256``) entry holds only in the prefix written before keyed hashes, and only when the
    chain from it holds up to the first keyed entry; an entry with a
    value the portal cannot have written (``entry.unreadable``: ``audit.selectors``) never does."""
    if not _hash_holds(EntryHasher(), entry):
        return False
    if entry.key_id == LEGACY_KEY_ID:
        return _in_legacy_prefix(entry) and _legacy_links_hold_from(entry)
    return _key_may_sign(entry)


def _hash_holds(hasher: EntryHasher, entry: LogbookEntry) -> bool:
    if entry.unreadable or entry.created_at is None:
        return False
    try:
        digest = hasher.digest(
            entry.key_id,
            entry.prev_hash,
            canonical_time(entry.created_at),
            entry.actor_id,
            entry.actor_label,
            entry.action,
            entry.account_id,
            entry.request_id,
            entry.instance_ids,
            entry.detail,
        )
    except UnknownLogbookKey:
        return False
    return hmac.compare_digest(digest, entry.hash)


def _legacy_links_hold_from(entry: LogbookEntry) -> bool:
    """An unkeyed entry vouches for something only through the keyed chain after it: anyone with the
    database can rewrite one and make its own hash hold (a ``terminal.ended`` naming a forged
    recording's digest, say). So every entry from it on, in id order, must hold and name the one
    before it, up to the first keyed entry, which must be genuine; with no keyed entry yet, up to the
    tip. Read only for a recording sealed before keyed hashes (a rare page), a batch at a time."""
    hasher = EntryHasher()
    previous, after = entry.hash, entry.pk
    while batch := logbook_entries_after(after, size=_LINKS_BATCH):
        for following in batch:
            if not hmac.compare_digest(following.prev_hash, previous):
                return False
            if following.key_id != LEGACY_KEY_ID:
                return logbook_entry_genuine(following)
            if not _hash_holds(hasher, following):
                return False
            previous, after = following.hash, following.pk
    return True


def _in_legacy_prefix(entry: LogbookEntry) -> bool:
    """An unkeyed hash anyone can recompute: it counts only before the first keyed entry (and up to
    PASSPORT_LOGBOOK_LEGACY_UNTIL when pinned), as the walk has it."""
    legacy_until: int | None = settings.PASSPORT_LOGBOOK_LEGACY_UNTIL
    if legacy_until is not None and entry.pk > legacy_until:
        return False
    keys = list(settings.PASSPORT_LOGBOOK_KEYS)
    return not LogbookEntry.objects.filter(key_id__in=keys, id__lt=entry.pk).exists()


def _key_may_sign(entry: LogbookEntry) -> bool:
    """Was the entry's key still one that signs where the entry stands (``audit.key_order``)? A
    retired key verifies only the entries before the first under a newer key (or up to its pin):
    its holder (it leaked, say) must not be able to add an entry that reads as genuine."""
    order = KeyOrder()
    newer = order.newer_than(entry.key_id)
    if not newer:  # the current key
        return True
    pin = order.pin(entry.key_id)
    if pin is not None:
        return entry.pk <= pin
    # One probe of the (key_id, id) index per newer key.
    return not LogbookEntry.objects.filter(key_id__in=newer, id__lt=entry.pk).exists()
