"""The scheduler on several hosts, one active: Celery beat that sends only while it holds a
PostgreSQL advisory lock.

Every beat (``celery -A passport_portal beat``; ``CELERY_BEAT_SCHEDULER`` names this class) keeps
one connection of its own and asks for a session-level advisory lock on it. The one that gets
it sends the periodic tasks; the others tick every ``PASSPORT_SCHEDULER_STANDBY_SECONDS`` and
send nothing. When the active host dies, its connection goes with it and PostgreSQL releases
the lock: a standby takes over at its next try. A host lost without closing its socket (cut off,
asleep) is given up on by the server within about 25 s: the lock's session sets the server's
``tcp_keepalives_*`` and ``tcp_user_timeout`` for its own socket (the OS's defaults would keep the
lock for 2 h 11 min); libpq's keepalives only watch the server from this side. The holder checks
its connection at most every ``PASSPORT_SCHEDULER_STANDBY_SECONDS`` too, and stops sending once
it is broken (another may hold the lock by then), so at most that long can two beats send at
once; the sweeps tolerate a duplicate. On any other database (SQLite, the single-process demo)
there is one beat: it sends.

One entry is sent by every beat, holder or standby: the Logbook's checkpoint (``ALWAYS_SENT``).
Any database role may take any advisory lock (and, if it may end sessions, end beat's first), so the
lock alone must not be able to silence the signed checkpoints: entries written and then removed
while none was sent would leave no trace (``audit.anchor.checkpoints``). A standby sends it on its
own schedule whether or not its database answers; two sends in one interval write one checkpoint
(the task finds the head signed already), and a race writes a harmless duplicate. Everything else,
the daily verification included, stays with the holder; a beat kept from the lock also stops the
scheduler's heartbeat, which ``/readyz`` reports.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import psycopg
from celery.beat import PersistentScheduler
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

# pg_try_advisory_lock's key: "passport-beat" in ASCII, truncated to a bigint.
LOCK_KEY = int.from_bytes(b"pspbeat", "big")
# The entries of CELERY_BEAT_SCHEDULE that every beat sends, holding the lock or not.
ALWAYS_SENT = frozenset({"checkpoint-logbook"})
# The server-side TCP settings of the lock's session (per-session settings any role may change).
SERVER_KEEPALIVES = (
    "SELECT set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '5', false),"
    " set_config('tcp_keepalives_count', '3', false), set_config('tcp_user_timeout', '25000', false)"
)


class LeaderLock:
    """A session-level advisory lock on a connection of its own."""

    def __init__(self) -> None:
        self.conn: psycopg.Connection[Any] | None = None
        self.held = False

    def _connect(self) -> psycopg.Connection[Any]:
        db = connections["default"].settings_dict
        params = {
            "dbname": db["NAME"],
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
        }
        conn = psycopg.connect(
            **{key: value for key, value in params.items() if value},
            autocommit=True,
            connect_timeout=5,
            # libpq's keepalives are this side's: a lost database server is noticed within ~25 s.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=25000,
            application_name="passport-beat",
        )
        try:
            # The server's side of this session's socket, which is what releases the lock: a host lost
            # without closing its socket is given up on within ~25 s (3 unanswered keepalives after 10 s
            # idle, or 25 s of unacknowledged data), not after the OS's 2 h 11 min. Set in the session,
            # not as a startup option, which PgBouncer refuses unless told to ignore it.
            conn.execute(SERVER_KEEPALIVES)
        except psycopg.Error:
            conn.close()
            raise
        return conn

    def check(self) -> bool:
        """Still (or now) the holder? A broken connection gives the lock up."""
        try:
            if self.conn is None or self.conn.closed:
                self.conn, self.held = self._connect(), False
            if self.held:
                self.conn.execute("SELECT 1")
            else:
                row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()
                self.held = bool(row and row[0])
                if self.held:
                    logger.warning("scheduler: this beat holds the lock and sends the periodic tasks")
        except psycopg.Error as exc:
            if self.held:
                logger.warning("scheduler: lost the database (%s); not sending until the lock is held again", exc)
            self.release()
        return self.held

    def release(self) -> None:
        conn, self.conn, self.held = self.conn, None, False
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()  # closing the session releases the lock


class LeaderScheduler(PersistentScheduler):
    """beat's own scheduler, sending only while this process holds the lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.leader_lock = LeaderLock()
        self.leader_checked_at = float("-inf")
        self.is_leader = False
        super().__init__(*args, **kwargs)

    def _leader(self) -> bool:
        if connections["default"].vendor != "postgresql":
            return True
        interval = settings.PASSPORT_SCHEDULER_STANDBY_SECONDS
        now = time.monotonic()
        if now - self.leader_checked_at >= interval:
            self.leader_checked_at = now
            self.is_leader = self.leader_lock.check()
        return self.is_leader

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._leader():
            return min(self._send_always_sent(), float(settings.PASSPORT_SCHEDULER_STANDBY_SECONDS))
        # Never sleep past the next check of the lock.
        return min(float(super().tick(*args, **kwargs)), float(settings.PASSPORT_SCHEDULER_STANDBY_SECONDS))

    def _send_always_sent(self) -> float:
        """As a standby: send the due entries of ``ALWAYS_SENT``; seconds until the next is due."""
        wait = float("inf")
        for name in sorted(ALWAYS_SENT):
            entry = self.schedule.get(name)
            if entry is None:
                continue
            due, next_in = self.is_due(entry)
            if due:
                self.reserve(entry)
                self.apply_entry(entry, producer=self.producer)
                self._heap = None  # as the holder, rebuild the queue of entries from the schedule
            wait = min(wait, float(next_in))
        return wait

    def close(self) -> None:
        super().close()
        self.leader_lock.release()
