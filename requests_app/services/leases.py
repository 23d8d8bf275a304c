"""Heartbeat leases on grants: a worker's claim lasts PASSPORT_LEASE_SECONDS and is renewed while it works.

A claim is the grant's ``lease_until``: a worker that holds it renews it every third of the
lease from a small thread while the script runs (however long that takes), matching on the
value it last wrote, so a claim another worker took over is never renewed. A worker that dies
stops renewing; within one lease its claim has run out and the sweep (every
PASSPORT_SWEEP_SECONDS) hands the grant to another worker.
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
        self._lock = threading.Lock()  # renewal (the keeper's thread) and release never interleave

    def renew(self) -> bool:
        """Push the lease on, if it is still ours; False (and ``lost``) when it is not."""
        with self._lock:
            if self.released:
                return False
            new_until = lease_new_until()
            renewed = Grant.objects.filter(pk=self.grant_id, lease_until=self.until).update(lease_until=new_until)
            if renewed:
                self.until = new_until
                self.renewals += 1
            else:
                self.lost = True
            return bool(renewed)

    @contextmanager
    def settling(self) -> Iterator[None]:
        """Renew no more, and let no renewal in flight move ``until``, while the block settles the
        grant (which clears the lease itself, matching on ``until``)."""
        with self._lock:
            self.released = True
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
                    if not lease.renew():
                        if not lease.released:
                            logger.warning("lease on grant %s was lost; not renewing it", lease.grant_id)
                        held.remove(lease)
        except Exception:  # the database away for a moment: the leases run out, the sweep retries
            logger.exception("renewing the leases on grants %s failed", names)
        finally:
            connections.close_all()  # this thread's own connections only

    thread = threading.Thread(target=beat, name=f"lease-grant-{names}"[:64], daemon=True)
    thread.start()
    try:
        yield leases
    finally:
        stop.set()
        thread.join()
