"""What an open terminal tells its person about the end of their access, decided without I/O.

``ExpiryWatch.update`` is handed the request's end time as last read and the time now, and
answers the frames to send: ``ends`` whenever the end time is new (the page's "Ends" line
follows an extension), and a ``notice`` when the time left first falls to 10 minutes, and
again at 2 minutes. An extension that lifts the time left above a mark lets it warn again.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from terminal import frames

WARN_AT = (timedelta(minutes=10), timedelta(minutes=2))


def ends_frame(expires_at: datetime) -> str:
    return frames.encode("ends", at=expires_at.isoformat())


def notice_text(*, expires_at: datetime, left: timedelta) -> str:
    minutes = max(1, math.ceil(left.total_seconds() / 60))
    return (
        f"This access ends in {minutes} minute{'s' if minutes != 1 else ''}, at "
        f"{expires_at:%H:%M:%S} UTC. Extend the request on its page to keep working."
    )


class ExpiryWatch:
    def __init__(self) -> None:
        self._sent_end: datetime | None = None
        self._warned: set[timedelta] = set()

    def update(self, expires_at: datetime | None, now: datetime) -> list[str]:
        if expires_at is None:
            return []
        out = []
        if expires_at != self._sent_end:
            self._sent_end = expires_at
            out.append(ends_frame(expires_at))
        left = expires_at - now
        # Marks the time left is above again (extended) may warn again later.
        self._warned = {mark for mark in self._warned if left <= mark}
        crossed = [mark for mark in WARN_AT if left <= mark and mark not in self._warned]
        if crossed and left > timedelta(0):
            # Opened, or extended, with two marks already passed: one warning, the nearer one.
            message = notice_text(expires_at=expires_at, left=left)
            out.append(frames.encode("notice", level="warning", message=message, at=expires_at.isoformat()))
        self._warned.update(crossed)
        return out

    def next_check_in(self, expires_at: datetime | None, now: datetime, *, most: float) -> float:
        """Seconds until the next mark, or the end itself, falls due, at most ``most`` (the end time
        may change meanwhile)."""
        if expires_at is None:
            return most
        left = expires_at - now
        due = [(left - mark).total_seconds() for mark in (*WARN_AT, timedelta(0)) if left > mark]
        return max(0.05, min([most, *due]))
