"""What the Logbook sealed of a terminal session, and where the session's row contradicts it.

A session's row (``TerminalSession``) is an ordinary database row: whoever can write to the
database can reopen it, point it at another grant or change its digest. Its ``terminal.ended``
entry is hash-chained under a key the database does not hold. So a recording's checks start from
the entry, found by the session's id alone (never through the request the row names today), and
treat a row that disagrees with it as tampering. Reads only.
"""

from __future__ import annotations

from typing import Any

from audit.genuine import logbook_entry_genuine
from audit.models import LogbookEntry
from audit.selectors import logbook_entry_first
from core.text import visible
from terminal.models import TerminalSession

# How much of a value an insider wrote into the row is quoted back.
QUOTED = 64


def sealing_entry(session: TerminalSession) -> tuple[LogbookEntry | None, bool]:
    """The session's ``terminal.ended`` entry (the first, as the daily pass takes it), or None; and
    whether its keyed hash holds (False: it was edited, and what it says of the recording vouches
    for nothing: ``EDITED_SEAL``)."""
    entry = logbook_entry_first(action="terminal.ended", detail={"terminal_session": session.pk})
    return entry, entry is not None and logbook_entry_genuine(entry)


def _quoted(value: object) -> str:
    text = visible(value)
    return text[:QUOTED] + ("…" if len(text) > QUOTED else "")


def _int(detail: dict[str, Any], key: str) -> int | None:
    value = detail.get(key)
    return value if type(value) is int else None


def row_contradictions(session: TerminalSession, entry: LogbookEntry) -> list[str]:
    """Each fact the row states otherwise than the sealing entry does, said as "it …" (the row).
    Facts an older entry does not record are not compared."""
    detail: dict[str, Any] = entry.detail if isinstance(entry.detail, dict) else {}
    found: list[str] = []
    if session.ended_at is None:
        found.append(
            f"it says the terminal is still open (the Logbook: ended {entry.created_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
    grant = session.grant
    if entry.request_id is not None and entry.request_id != grant.request_id:
        found.append(f"it names request #{grant.request_id} (the Logbook: request #{entry.request_id})")
    sealed_instances = entry.instance_id_list
    if sealed_instances and grant.instance.instance_id not in sealed_instances:
        found.append(
            f"it names instance {_quoted(grant.instance.instance_id)} (the Logbook: {', '.join(sealed_instances)})"
        )
    digest = detail.get("recording_sha256")
    if isinstance(digest, str) and digest != session.recording_sha256:
        found.append("it names another SHA-256 than the Logbook sealed")
    state = detail.get("recording_state")
    if isinstance(state, str) and state != session.recording_state:
        found.append(f"it says the recording is {_quoted(session.recording_state)} (the Logbook: {_quoted(state)})")
    for key, what in (("bytes_out", "shown"), ("bytes_in", "typed")):
        sealed = _int(detail, key)
        if sealed is not None and sealed != getattr(session, key):
            found.append(f"it says {getattr(session, key)} bytes {what} (the Logbook: {sealed})")
    reason = detail.get("reason")
    if isinstance(reason, str) and session.ended_at is not None and reason[:256] != session.end_reason:
        found.append("it gives another end reason than the Logbook")
    return found


def contradiction_said(found: list[str]) -> str:
    """The page's words for a row that contradicts its sealing entry."""
    return (
        "This terminal's record in the database contradicts its terminal.ended entry in the Logbook: "
        + "; ".join(found)
        + ". The Logbook's entries are hash-chained and the record is not: treat this as tampering until "
        "someone explains it."
    )


EDITED_SEAL = (
    "This terminal's terminal.ended entry in the Logbook was edited after it was written: its keyed hash "
    "no longer holds (verify_logbook names it), so the SHA-256 it names vouches for nothing and the "
    "recording cannot be checked. Treat this recording as tampered with until someone explains it."
)

UNSEALED = (
    "This terminal's record says it ended, but the Logbook has no terminal.ended entry for it: there is "
    "no sealed digest to check the recording against. Every terminal that ends is written to the Logbook "
    "with its record, in one transaction: treat this as tampering until someone explains it."
)
