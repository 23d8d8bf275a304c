"""The scheduler's advisory lock is released by PostgreSQL only when the server notices the holder's
session is gone. passport_portal/scheduler.py and deploy/README.md say a beat host "cut off without
closing its socket" is noticed "once the server's TCP keepalive gives up on it, about 25 s"; but the
keepalives=1/keepalives_idle=10/... given to psycopg.connect are libpq's *client-side* socket
options. The server's side of the socket keeps PostgreSQL's tcp_keepalives_* (default: the OS's,
7200 s idle + 9 x 75 s), so a lost holder kept the lock, and every standby was kept from sending
(nothing expires, no removal, no sweep), for about 2 h 11 min, not 25 s. The lock's session now
sets the server's side of its own socket."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection

from passport_portal.scheduler import LeaderLock

pytestmark = pytest.mark.usefixtures("live_db")


def _os_default(name: str) -> int:
    return int(Path("/proc/sys/net/ipv4", name).read_text())


def test_the_server_gives_up_on_a_lost_lock_holder_within_about_25_seconds() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    lock = LeaderLock()
    try:
        assert lock.check()
        assert lock.conn is not None
        # What the server applies to its side of this very session's socket (a per-session setting
        # reading the socket's value; 0 would be the OS default).
        row = lock.conn.execute(
            "SELECT current_setting('tcp_keepalives_idle')::int, current_setting('tcp_keepalives_interval')::int,"
            " current_setting('tcp_keepalives_count')::int, current_setting('tcp_user_timeout')::int"
        ).fetchone()
        assert row is not None
        idle, interval, count, user_timeout_ms = row
        idle = idle or _os_default("tcp_keepalive_time")
        interval = interval or _os_default("tcp_keepalive_intvl")
        count = count or _os_default("tcp_keepalive_probes")
        gives_up_after = idle + interval * count
        assert gives_up_after <= 60, (
            f"the server keeps a silent lock holder's session (and the beat lock) for {gives_up_after} s "
            f"(idle {idle} s + {count} x {interval} s; tcp_user_timeout {user_timeout_ms} ms), not about 25 s"
        )
        # Data the server sent and the lost host never acknowledged (keepalives wait behind it).
        assert 0 < user_timeout_ms <= 60_000
    finally:
        lock.release()
