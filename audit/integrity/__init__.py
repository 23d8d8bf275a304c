"""Checking the Logbook's hash chain: is every entry as written, and is every entry there?

The walk reads the entries in id order, in windows, so memory stays flat at any size; on
PostgreSQL through COPY, each hash checked from its text (``audit.chain_scan``, in parallel
processes with ``jobs``), elsewhere as typed rows. What it can tell apart:

- an entry whose content no longer matches its hash, an HMAC under the Logbook key it names
  (``legacy-sha256`` is accepted only for the prefix written before keyed hashes, and a retired
  key only for entries before the first under a newer key, ``audit.key_order``): edited;
- an entry whose ``prev_hash`` names an entry further back than the one before it: the
  entries in between were inserted;
- an entry whose ``prev_hash`` names no entry at all: the entry (or entries) before it
  were removed, or the one before it was rewritten together with its hash;
- a tip that disagrees with ``LogbookHead``: entries removed from (truncated), or added at, the end.

Someone holding the database and the key can still rewrite a tail consistently; the signed
checkpoints in the evidence bucket catch that (``audit.anchor.coverage``, the ``observer``).

Gaps in the ids alone prove nothing (a rolled-back append uses up an id), so only the
hashes are trusted.

Where each part lives: the walk (``walk``), the typed reader it falls back to (``typed_rows``),
and the problems and report every check adds to (``report``).
"""

from audit.integrity.report import ChainProblem, ChainReport, acknowledged_by_operator
from audit.integrity.typed_rows import ENTRY_COLUMNS, entry_rows
from audit.integrity.walk import EntryObserver, logbook_verify

__all__ = [
    "ENTRY_COLUMNS",
    "ChainProblem",
    "ChainReport",
    "EntryObserver",
    "acknowledged_by_operator",
    "entry_rows",
    "logbook_verify",
]
