"""The database, and in production a per-process cap on its PostgreSQL connections.

Without ``DATABASE_URL`` the demo keeps its data in SQLite under ``PASSPORT_VAR_DIR``; production
needs one.

Django's ASGI handler runs each request's database work in a thread of its own, and a connection
belongs to its thread: without a pool one web process holds a connection per request in flight,
however many. With ``PASSPORT_DB_POOL_MAX_SIZE`` (10 by default in production) each process shares
at most that many through psycopg's pool: a request finished (Django's ``close()``) hands its
connection back, and one that finds none free waits up to ``PASSPORT_DB_POOL_TIMEOUT_SECONDS``,
then fails with psycopg's PoolTimeout (an OperationalError, "couldn't get a connection after ...
sec"), logged as any server error is, instead of hanging. Outside production the pool is off
unless the variable is given: the test suite's threads and pytest-django keep a connection each.
"""

from __future__ import annotations

from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import env_int, env_str
from passport_portal.settings.environment import PRODUCTION, VAR_DIR

POSTGRESQL_ENGINE = "django.db.backends.postgresql"
# A pool keeps this many connections open while idle (psycopg's default is 4; more opens on demand,
# and those idle for 10 minutes are closed again), so many mostly idle processes cost PostgreSQL little.
DB_POOL_MIN_SIZE = 1
# Without a pool, a thread's connection is kept this long between requests.
CONN_MAX_AGE_WITHOUT_POOL = 60


def database_settings(url: str, *, pool_max_size: int, pool_timeout_seconds: int) -> dict[str, Any]:
    """Django's settings for the database at ``url``: PostgreSQL pooled when ``pool_max_size`` is above 0
    (Django then needs CONN_MAX_AGE 0: ``close()`` returns a connection to the pool)."""
    pooled = pool_max_size > 0
    config: dict[str, Any] = dict(
        dj_database_url.parse(url, conn_max_age=0 if pooled else CONN_MAX_AGE_WITHOUT_POOL, conn_health_checks=True)
    )
    if pooled and config["ENGINE"] == POSTGRESQL_ENGINE:
        config["OPTIONS"] = {
            **config.get("OPTIONS", {}),
            "pool": {
                "name": "passport",
                "min_size": min(DB_POOL_MIN_SIZE, pool_max_size),
                "max_size": pool_max_size,
                "timeout": pool_timeout_seconds,
            },
        }
    elif pooled:  # SQLite (a file, one writer): nothing to cap, and Django has no pool for it
        config["CONN_MAX_AGE"] = CONN_MAX_AGE_WITHOUT_POOL
    return config


def _env_count(name: str, default: int, *, zero_means: str | None = None) -> int:
    """``name`` as an integer of at least 1 (or 0, when ``zero_means`` says what it does); else a start-up error."""
    value = env_int(name, default)
    if value < (0 if zero_means else 1):
        allowed = f"0 ({zero_means}) or more" if zero_means else "1 or more"
        raise ImproperlyConfigured(f"{name}={value} must be {allowed}.")
    return value


PASSPORT_DB_POOL_MAX_SIZE = _env_count(
    "PASSPORT_DB_POOL_MAX_SIZE", 10 if PRODUCTION else 0, zero_means="no pool: a connection per thread"
)
PASSPORT_DB_POOL_TIMEOUT_SECONDS = _env_count("PASSPORT_DB_POOL_TIMEOUT_SECONDS", 10)

DATABASE_URL = env_str("DATABASE_URL", "" if not PRODUCTION else None)
if DATABASE_URL:
    DATABASES = {
        "default": database_settings(
            DATABASE_URL,
            pool_max_size=PASSPORT_DB_POOL_MAX_SIZE,
            pool_timeout_seconds=PASSPORT_DB_POOL_TIMEOUT_SECONDS,
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "passport.sqlite3"),
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
