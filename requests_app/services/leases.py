"""Heartbeat leases on grants: a worker's claim lasts PASSPORT_LEASE_SECONDS and is renewed while it works.

A claim is the grant's ``lease_until``: a worker that holds it renews it every third of the
lease from a small thread while the script runs (however long that takes), matching on the
value it last wrote, so a claim another worker took over is never renewed. A worker that dies
stops renewing; within one lease its claim has run out and the sweep (every
PASSPORT_SWEEP_SECONDS) hands the grant to another worker.

A renewal that fails (the database away for a moment, a failover) is tried again at the next
interval on a fresh connection, for as long as the worker works. One whose answer was lost may
have been written: until a renewal is answered, each value written since the last answered one
counts as ours too, and settling first pins the row to one known value.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections
from django.utils import timezone

from requests_app.models import Grant

logger = logging.getLogger(__name__)


def lease_length() -> timedelta:
    return timedelta(seconds=settings.PASSPORT_LEASE_SECONDS)


def lease_new_until() -> datetime:
    return timezone.now() + lease_length()


class GrantLease:
    """One worker's claim on one grant; ``until`` is the value it last wrote (its token)."""

    def __init__(self, grant_id: int, until: datetime) -> None:
        self.grant_id = grant_id
        self.until = until
        self.lost = False
        self.released = False
        self.renewals = 0
        self._unsure: list[datetime] = []  # written or not: renewals whose answer was lost
        self._lock = threading.Lock()  # renewal (the keeper's thread) and release never interleave

    def _move(self) -> bool:
        """Move the row's lease on from any value that may be ours (the caller holds ``_lock``)."""
        new_until = lease_new_until()
        ours = [self.until, *self._unsure]
        self._unsure.append(new_until)  # should the answer be lost, the write may still have landed
        moved = Grant.objects.filter(pk=self.grant_id, lease_until__in=ours).update(lease_until=new_until)
        self._unsure.clear()
        if moved:
            self.until = new_until
        return bool(moved)

    def renew(self) -> bool:
        """Push the lease on, if it is still ours; False (and ``lost``) when it is not."""
        with self._lock:
            if self.released:
                return False
            if self._move():
                self.renewals += 1
                return True
            self.lost = True
            return False

    @contextmanager
    def settling(self) -> Iterator[None]:
        """Renew no more, and let no renewal in flight move ``until``, while the block settles the
        grant (which clears the lease itself, matching on ``until``). After a renewal whose answer
        was lost, the row is first moved to a value known to be ``until`` (or found taken over)."""
        with self._lock:
            self.released = True
            if self._unsure and not self._move():
                self.lost = True
            yield


@contextmanager
def grant_lease_kept(*leases: GrantLease) -> Iterator[tuple[GrantLease, ...]]:
    """Renew each of ``leases`` in the background, from one thread, for as long as the block runs.

    A lease that is lost is no longer renewed; the others still are."""
    stop = threading.Event()
    interval = max(settings.PASSPORT_LEASE_SECONDS / 3, 0.05)
    names = ",".join(str(lease.grant_id) for lease in leases)

    def beat() -> None:
        held = list(leases)
        try:
            while held and not stop.wait(interval):
                for lease in list(held):
                    try:
                        renewed = lease.renew()
                    except Exception as exc:  # the database away for a moment: try again next time
                        # The class only: a driver's message may name hosts and users.
                        logger.warning(
                            "renewing the lease on grant %s failed (%s); trying again in %.1f s",
                            lease.grant_id,
                            type(exc).__name__,
                            interval,
                        )
                        connections.close_all()  # a broken connection is opened afresh at the next try
                        continue
                    if not renewed:
                        if not lease.released:
                            logger.warning("lease on grant %s was lost; not renewing it", lease.grant_id)
                        held.remove(lease)
        finally:
            connections.close_all()  # this thread's own connections only

    thread = threading.Thread(target=beat, name=f"lease-grant-{names}"[:64], daemon=True)
    thread.start()
    try:
        yield leases
    finally:
        stop.set()
        thread.join()
