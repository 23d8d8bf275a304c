"""Redis (the Celery broker and the channel layer, or in-process stand-ins), the cache, Celery and beat's schedule."""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import schedule

from passport_portal.env import env_bool, env_int, env_str
from passport_portal.settings.environment import PRODUCTION

REDIS_URL = env_str("REDIS_URL", "" if not PRODUCTION else None)
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # redis-py 8 reads with a 5 s socket timeout by default; channels_redis blocks 5 s on BZPOPMIN,
    # and the two race: a quiet terminal's receive loop then dies with TimeoutError. No read timeout.
    # After Redis restarts, the pool's idle connections are closed ones: a command on one is tried
    # once more on a new connection (else the first terminals opened on each web process are
    # refused); Redis still down fails as before (tests/integration/test_many_hosts.py).
    from redis.asyncio.retry import Retry as _RedisRetry
    from redis.backoff import NoBackoff as _NoBackoff

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None, "retry": _RedisRetry(_NoBackoff(), 1)}]
            },
        }
    }
else:
    # One process: the demo runs web, worker and scheduler together (`manage.py runportal`).
    CELERY_BROKER_URL = "memory://localhost//"  # kombu warns at each connection of a URL without a host
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# One cache for every web process and worker, in the database (its table: core's first migration):
# allauth keeps its failed-sign-in, reset and TOTP limits there, which a per-process cache would
# multiply by the number of processes behind the proxy.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "passport_cache"}}

CELERY_TASK_ALWAYS_EAGER = env_bool("PASSPORT_CELERY_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after each task unless
# this is set; a new PostgreSQL connection costs about as much CPU as a small task. It then
# closes them only every this many tasks, and passport_portal.celery drops a connection that
# failed or outlived CONN_MAX_AGE around each task, as Django does around each request. With the
# pool (production, settings/database.py) a closed connection goes back to the process's pool.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# A Redis that hangs (its host paused or cut off) rather than refuses: without a socket timeout
# kombu waits on it for ever, and an approval (its on-commit send), the sweeps and beat with it.
# Every send and connect gives up after a few seconds instead and is retried at most twice, so a
# hung broker costs a send ~15 s and reaches core.dispatch's BrokerError handling: the work is
# left to the sweeps and the page says it is queued. A worker's own reads (BRPOP) return every
# second, well inside the timeout.
BROKER_SOCKET_TIMEOUT_SECONDS = 5
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_timeout": BROKER_SOCKET_TIMEOUT_SECONDS,
    "socket_connect_timeout": BROKER_SOCKET_TIMEOUT_SECONDS,
}
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_SOCKET_TIMEOUT_SECONDS
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
# Revocation first: expiry, removal and ending sessions (to withdrawn ports, or left by a
# removal) have their own queue, which provisioning never fills.
# Every worker consumes both queues (`--queues celery,revocation`); a worker started with
# `--queues revocation` alone (deploy/systemd/passport-revoker@.service) keeps a burst of
# provisioning from delaying an expiry at all.
PASSPORT_REVOCATION_QUEUE = "revocation"
CELERY_TASK_DEFAULT_QUEUE = "celery"
PASSPORT_WORKER_QUEUES = [CELERY_TASK_DEFAULT_QUEUE, PASSPORT_REVOCATION_QUEUE]
CELERY_TASK_ROUTES = {
    f"workers.tasks.{name}": {"queue": PASSPORT_REVOCATION_QUEUE}
    for name in (
        "expire_due_requests",
        "expire_requests",
        "deprovision_grant",
        "deprovision_grants",
        "end_withdrawn_sessions",
        "end_token_sessions",
        "end_all_withdrawn_sessions",
        "end_credential_sessions",
        "end_left_sessions",
    )
}
# The expiry sweep hands due requests out in batches of this many, one task each; it and each
# batch wait at most this long for a lock before giving up for the round (rows locked by
# another transaction are skipped outright).
PASSPORT_EXPIRY_BATCH = env_int("PASSPORT_EXPIRY_BATCH", 20)
PASSPORT_EXPIRY_LOCK_TIMEOUT_MS = env_int("PASSPORT_EXPIRY_LOCK_TIMEOUT_MS", 2000)
CELERY_BEAT_SCHEDULE = {
    # The expiry sweep runs every 10 s, so a request ends at most ~10 s after its time.
    "expire-due-requests": {"task": "workers.tasks.expire_due_requests", "schedule": schedule(timedelta(seconds=10))},
    "sync-inventory": {"task": "workers.tasks.sync_all_inventory", "schedule": schedule(timedelta(minutes=5))},
    "reconcile-fleet": {
        "task": "workers.tasks.reconcile_fleet",
        "schedule": schedule(timedelta(seconds=env_int("PASSPORT_RECONCILE_SECONDS", 600))),
    },
    "warn-expiring-requests": {
        "task": "workers.tasks.warn_expiring_requests",
        "schedule": schedule(timedelta(seconds=60)),
    },
    "bind-grant-keys": {"task": "workers.tasks.bind_grant_keys", "schedule": schedule(timedelta(minutes=5))},
    # The CLI's own sessions to a port taken off an account end at the admin's save (a task queued
    # then); this finds those whose task was lost or whose TerminateSession AWS refused, and ends those
    # of CLI sign-ins that expired since (nothing else does: at most this period after their end).
    "end-withdrawn-sessions": {
        "task": "workers.tasks.end_all_withdrawn_sessions",
        "schedule": schedule(timedelta(minutes=5)),
    },
    # AWS credentials handed out before an account became moderated or recorded cannot be recalled:
    # until they expire, a session they start there is ended within 30 s. Only accounts where some
    # active request's credentials have not expired are looked at (one indexed query otherwise).
    "end-credential-sessions": {
        "task": "workers.tasks.end_credential_sessions",
        "schedule": schedule(timedelta(seconds=30)),
    },
    # Sessions of ended access that removal could not end (AWS would not list or end them); each
    # grant backs off by its own tries, so a run mostly finds nothing due.
    "end-left-sessions": {"task": "workers.tasks.end_left_sessions", "schedule": schedule(timedelta(seconds=30))},
    "sync-account-expiries": {
        "task": "workers.tasks.sync_account_expiries",
        "schedule": schedule(timedelta(minutes=5)),
    },
    "retry-stuck-grants": {
        "task": "workers.tasks.resume_stuck_grants",
        "schedule": schedule(timedelta(seconds=env_int("PASSPORT_SWEEP_SECONDS", 20))),
    },
    # Closed windows of counted refusals become one Logbook summary each (audit.refusals).
    "flush-logbook-refusals": {
        "task": "workers.tasks.flush_logbook_refusals",
        "schedule": schedule(timedelta(minutes=1)),
    },
    # The chain's head, signed, to the evidence bucket (audit/anchor), and the daily check of it all.
    "checkpoint-logbook": {
        "task": "workers.tasks.checkpoint_logbook",
        "schedule": schedule(timedelta(seconds=env_int("PASSPORT_LOGBOOK_CHECKPOINT_SECONDS", 60))),
    },
    "verify-logbook": {"task": "workers.tasks.verify_logbook", "schedule": schedule(timedelta(days=1))},
    # Django never deletes a stored session itself: expired ones, signed in or not, go hourly.
    "purge-expired-sessions": {
        "task": "workers.tasks.purge_expired_sessions",
        "schedule": schedule(timedelta(hours=1)),
    },
}
