"""Which Logbook key may sign an entry where it stands in the chain.

The keys are ordered, newest first: the current key (``PASSPORT_LOGBOOK_KEY_ID``), then
``PASSPORT_LOGBOOK_OLD_KEYS`` as listed, the most recently retired first. A retired key is kept only
so the entries hashed before its rotation still verify: once an entry under a newer key is in the
chain, an entry under an older key after it is one the portal did not write, but someone holding
the retired key (one that leaked, say) and the right to INSERT. The same rule for the chain walk
(sequential and in parallel ranges, ``audit.integrity.walk``) and for the Logbook page's verdict
(``audit.anchor.status``).

A rotation done with every writing process restarted at once leaves no overlap. A rolling restart
does: a process not yet restarted goes on writing under the old key after the new key's first
entries. The operator checks those entries and pins the last one the old key may sign
(``PASSPORT_LOGBOOK_OLD_KEYS_UNTIL``); a pinned key is accepted up to that entry wherever it
stands, and for no entry after it. Entries under ``legacy-sha256`` are the walk's own rule (the
prefix before keyed hashes, ``PASSPORT_LOGBOOK_LEGACY_UNTIL``); a key not configured is the hash
check's finding, not this one's.
"""

from __future__ import annotations

from django.conf import settings


class KeyOrder:
    """The configured keys' ages (0 the current key, larger older) and pins, read once."""

    def __init__(self) -> None:
        current = str(settings.PASSPORT_LOGBOOK_KEY_ID)
        keys: dict[str, str] = settings.PASSPORT_LOGBOOK_KEYS
        self.order = [current] + [key_id for key_id in keys if key_id != current]
        self.ages = {key_id: age for age, key_id in enumerate(self.order)}
        self.until: dict[str, int] = dict(settings.PASSPORT_LOGBOOK_OLD_KEYS_UNTIL)

    def age(self, key_id: str | None) -> int | None:
        """0 for the current key, 1 for the one retired last, ...; None for a key not configured."""
        return self.ages.get(key_id) if key_id is not None else None

    def newer_than(self, key_id: str) -> list[str]:
        """The configured keys newer than ``key_id`` (none for the current key or an unknown one)."""
        age = self.ages.get(key_id)
        return self.order[:age] if age is not None else []

    def pin(self, key_id: str) -> int | None:
        """The last entry PASSPORT_LOGBOOK_OLD_KEYS_UNTIL lets the old key ``key_id`` sign, if pinned."""
        return self.until.get(key_id) if key_id != self.order[0] else None

    def refusal(self, entry_id: int, key_id: str | None, newest_before: int | None) -> str | None:
        """Why ``key_id`` may not sign entry ``entry_id``, whose chain before it holds entries under a
        key as new as age ``newest_before`` at most (None: no keyed entry yet); None when it may."""
        age = self.age(key_id)
        if age is None or age == 0:
            return None
        pin = self.pin(key_id)  # type: ignore[arg-type]  # a configured key's id
        if pin is not None:
            if entry_id <= pin:
                return None
            return (
                f"Entry #{entry_id} is hashed under the retired Logbook key {key_id!r}, which "
                f"PASSPORT_LOGBOOK_OLD_KEYS_UNTIL lets sign entries up to #{pin} only: it was written by "
                "someone holding the retired key."
            )
        if newest_before is None or age <= newest_before:
            return None
        return (
            f"Entry #{entry_id} is hashed under the retired Logbook key {key_id!r} after entries under the "
            f"newer key {self.order[newest_before]!r}: it was written by someone holding the retired key, or "
            "by a process not yet restarted during the rotation (check, then pin the last such entry with "
            "PASSPORT_LOGBOOK_OLD_KEYS_UNTIL); or PASSPORT_LOGBOOK_OLD_KEYS does not list the keys newest first."
        )

    @staticmethod
    def newest(newest_before: int | None, age: int | None) -> int | None:
        """The newest key's age after an entry of ``age`` whose hash holds."""
        if age is None:
            return newest_before
        return age if newest_before is None else min(newest_before, age)
