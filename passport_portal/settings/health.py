"""Health and metrics (passport_portal/health), beat's leader lock, and the terminals' sweeps on beat."""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import schedule
from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import env_int, env_str
from passport_portal.settings.broker import CELERY_BEAT_SCHEDULE
from passport_portal.settings.terminal import PASSPORT_RECORDING_SWEEP_SECONDS

# beat sends a heartbeat task this often (core.heartbeat); /readyz fails when the last one a
# worker ran is older than PASSPORT_SCHEDULER_STALE_SECONDS.
PASSPORT_SCHEDULER_HEARTBEAT_SECONDS = env_int("PASSPORT_SCHEDULER_HEARTBEAT_SECONDS", 15)
PASSPORT_SCHEDULER_STALE_SECONDS = env_int("PASSPORT_SCHEDULER_STALE_SECONDS", 90)
# beat may run on several hosts: only the one holding a PostgreSQL advisory lock sends
# (passport_portal.scheduler); the others try for it, and the holder checks its hold, this often.
CELERY_BEAT_SCHEDULER = "passport_portal.scheduler:LeaderScheduler"
PASSPORT_SCHEDULER_STANDBY_SECONDS = env_int("PASSPORT_SCHEDULER_STANDBY_SECONDS", 5)
CELERY_BEAT_SCHEDULE["scheduler-heartbeat"] = {
    "task": "workers.tasks.scheduler_heartbeat",
    "schedule": schedule(timedelta(seconds=PASSPORT_SCHEDULER_HEARTBEAT_SECONDS)),
}
# /readyz reuses its answer for this long in each process, so a flood of probes costs one check.
PASSPORT_READYZ_CACHE_SECONDS = env_int("PASSPORT_READYZ_CACHE_SECONDS", 2)
# /metrics wants "Authorization: Bearer <token>". Unset: refused in production, and elsewhere
# answered only to the machine itself (loopback).
PASSPORT_METRICS_TOKEN = env_str("PASSPORT_METRICS_TOKEN", "")
if PASSPORT_METRICS_TOKEN and len(PASSPORT_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("PASSPORT_METRICS_TOKEN must be at least 16 characters.")

CELERY_BEAT_SCHEDULE["finalise-orphaned-terminals"] = {
    "task": "workers.tasks.finalise_orphaned_terminals",
    "schedule": schedule(timedelta(seconds=PASSPORT_RECORDING_SWEEP_SECONDS)),
}
# The terminal page's one-time tickets, an hour after they expired (terminal.services.tickets_purge).
CELERY_BEAT_SCHEDULE["purge-terminal-tickets"] = {
    "task": "workers.tasks.purge_terminal_tickets",
    "schedule": schedule(timedelta(minutes=1)),
}
