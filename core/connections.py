"""Handing a thread's database connection back before a request ends (production's pool)."""

from __future__ import annotations

from django.db import connections


def connections_hand_back() -> None:
    """Close what Django closes at the end of a request, for this thread: with the pool (production)
    CONN_MAX_AGE is 0 and each connection goes back to it; without one, a connection younger than
    CONN_MAX_AGE is kept. A connection inside a transaction (ATOMIC_REQUESTS, a test's own) is left
    alone: closing it there would break the transaction."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
