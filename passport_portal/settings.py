"""Passport settings: one module, driven by the environment.

With nothing set, the portal runs on embedded defaults for the demo: SQLite, an
in-process Celery broker and channel layer, and devcloud for AWS. ``DATABASE_URL``,
``REDIS_URL`` and the AWS variables switch on the real parts. With
``PASSPORT_ENV=production`` every secret must be given; nothing falls back.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import dj_database_url
from botocore.config import Config as BotoConfig
from celery.schedules import schedule
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import (
    ed25519_private_key_check,
    env_bool,
    env_int,
    env_list,
    env_str,
    logbook_keys_parse,
    time_windows_parse,
)
from passport_portal.proxies import networks_parse

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PASSPORT_VAR_DIR", str(BASE_DIR / "var")))

PASSPORT_ENV = env_str("PASSPORT_ENV", "development")
if PASSPORT_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"PASSPORT_ENV={PASSPORT_ENV!r}: use development, test or production.")
PRODUCTION = PASSPORT_ENV == "production"

# Production secrets have no default: a missing one stops the start.
_DEV_SECRET = "dev-only-insecure-secret-key-do-not-use-in-production-0123456789"  # noqa: S105  # nosec B105
SECRET_KEY = env_str("PASSPORT_SECRET_KEY") if PRODUCTION else env_str("PASSPORT_SECRET_KEY", _DEV_SECRET)
# Keys the masked user ids in OS usernames; separate from SECRET_KEY so rotating one
# does not rename every short-lived user.
_DEV_USERNAME_KEY = "dev-username-key"
PASSPORT_USERNAME_KEY = (
    env_str("PASSPORT_USERNAME_KEY") if PRODUCTION else env_str("PASSPORT_USERNAME_KEY", _DEV_USERNAME_KEY)
)
# As for the CA and Logbook keys below: a demo or guessable key would let anyone forge sessions
# and signed links (SECRET_KEY) or unmask the user ids in OS usernames (the username key).
for _name, _value, _demo in (
    ("PASSPORT_SECRET_KEY", SECRET_KEY, _DEV_SECRET),
    ("PASSPORT_USERNAME_KEY", PASSPORT_USERNAME_KEY, _DEV_USERNAME_KEY),
):
    if PRODUCTION and (len(_value) < 32 or _value == _demo):
        raise ImproperlyConfigured(f"{_name} must be a random secret of at least 32 characters.")
DEBUG = env_bool("PASSPORT_DEBUG", default=not PRODUCTION)
# Django's debug page shows the settings, DATABASE_URL and REDIS_URL whole (passwords included),
# and every exception's local variables: never in production.
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured(
        "PASSPORT_DEBUG is on with PASSPORT_ENV=production: debug pages would show the settings (connection "
        "passwords included) to anyone who causes an error. Unset PASSPORT_DEBUG."
    )
ALLOWED_HOSTS = env_list(
    "PASSPORT_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("PASSPORT_CSRF_TRUSTED_ORIGINS", [])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("PASSPORT_ALLOWED_HOSTS is required in production.")

INSTALLED_APPS = [
    "daphne",
    "passport_portal.apps.PassportAdminConfig",  # django.contrib.admin with the audited site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "channels",
    "core",
    "fleet",
    "accounts",
    "requests_app",
    "audit",
    "workers",
    "sshca",
    "terminal",
    "passport_portal.apps.PassportPortalConfig",
]

MIDDLEWARE = [
    # X-Forwarded-For/-Proto count only from PASSPORT_TRUSTED_PROXIES: dropped from anyone else
    # before the health endpoints, the https redirect, allauth, DRF or the refusal records read them.
    "passport_portal.proxies.ForwardedHeadersMiddleware",
    # Each request starts with no CLI token marked for the Logbook and leaves none to the next (audit/origin.py).
    "audit.origin.LogbookOriginMiddleware",
    # /healthz, /readyz and /metrics answer before the host check and the https redirect: load
    # balancers and scrapers call by address over plain http (passport_portal/health).
    "passport_portal.health.middleware.HealthEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "passport_portal.csp.PassportCSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # An htmx request that is refused gets one line the page shows, not a page it would not swap.
    "passport_portal.htmx_refusals.HtmxRefusalMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A signed-in session ends at a fixed time after its sign-in, however often it is written
    # (accounts/session_lifetime.py); before any view, so the API's session calls are ended too.
    "accounts.session_lifetime.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "passport_portal.middleware.NoStoreMiddleware",
]

ROOT_URLCONF = "passport_portal.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "passport_portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.navigation",
                "requests_app.context_processors.approvals_waiting",
            ],
            # visible / visible_lines in every template (core/templatetags/text.py).
            "builtins": ["core.templatetags.text"],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", "" if not PRODUCTION else None)
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "passport.sqlite3"),
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # Django's and allauth's password backends, refusing people who sign in by SAML (accounts/auth_backends.py).
    "accounts.auth_backends.LocalModelBackend",
    "accounts.auth_backends.LocalAllauthBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "requests:list"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
# People are provisioned by an admin or by the identity provider, never by self-sign-up.
ACCOUNT_ADAPTER = "accounts.adapters.NoSignupAccountAdapter"
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
ACCOUNT_SESSION_REMEMBER = False
# Local accounts are the break-glass way in; each person may add TOTP (with recovery codes).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Passport"
# TOTP secrets and recovery-code seeds sealed at rest (accounts/mfa.py).
MFA_ADAPTER = "accounts.mfa.PassportMFAAdapter"

# SAML identity providers, one per identity store (see accounts/saml/config.py for the keys):
# a JSON list in PASSPORT_SAML_IDPS, or in the file PASSPORT_SAML_IDPS_FILE. Unset means no
# SAML (local accounts only); the admin can add more. Production accepts only https IdPs.
try:
    PASSPORT_SAML_IDPS = json.loads(env_str("PASSPORT_SAML_IDPS", "") or "[]")
except ValueError as exc:
    raise ImproperlyConfigured(f"PASSPORT_SAML_IDPS is not valid JSON: {exc}") from exc
if not isinstance(PASSPORT_SAML_IDPS, list):
    raise ImproperlyConfigured("PASSPORT_SAML_IDPS must be a JSON list of identity providers.")
# Optional SP key pair: with it, AuthnRequests and LogoutRequests are signed.
PASSPORT_SAML_SP_CERT = env_str("PASSPORT_SAML_SP_CERT", "")
PASSPORT_SAML_SP_KEY = env_str("PASSPORT_SAML_SP_KEY", "")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # Pinned npm packages installed by scripts/setup (package.json), served as they are.
    ("vendor/htmx", BASE_DIR / "node_modules" / "htmx.org" / "dist"),
    ("vendor/xterm", BASE_DIR / "node_modules" / "@xterm" / "xterm"),
    ("vendor/xterm-addon-fit", BASE_DIR / "node_modules" / "@xterm" / "addon-fit" / "lib"),
    ("vendor/asciinema-player", BASE_DIR / "node_modules" / "asciinema-player" / "dist" / "bundle"),
]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "passport_portal.staticfiles.PickedFilesFinder",
]
# Packages served only in part (passport_portal/staticfiles.py): Swagger UI for /api/docs/, without
# the package's own demo and OAuth2 pages.
VENDOR_STATIC_FILES = {
    "vendor/swagger-ui": (
        BASE_DIR / "node_modules" / "swagger-ui-dist",
        ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui.css.map", "favicon-32x32.png"],
    ),
}
STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
        # Public files, readable by whatever serves them: not the private modes below.
        "OPTIONS": {"file_permissions_mode": 0o644, "directory_permissions_mode": 0o755},
    },
}
MEDIA_ROOT = VAR_DIR / "media"
# Files Passport writes to disk (local recordings, CLI wheels) are its own and its group's:
# Django's default, 0o644, makes every recording readable by every user of the host whatever
# the umask. The static files keep their own modes above.
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750
# Outside production, serve static files straight from the apps and node_modules.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

# --- Redis: the Celery broker and the channel layer, or in-process stand-ins -----------
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
    CELERY_BROKER_URL = "memory://"
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
# failed or outlived CONN_MAX_AGE around each task, as Django does around each request.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
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
        "end_all_withdrawn_sessions",
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
    # then); this finds those whose task was lost or whose TerminateSession AWS refused.
    "end-withdrawn-sessions": {
        "task": "workers.tasks.end_all_withdrawn_sessions",
        "schedule": schedule(timedelta(minutes=5)),
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
}

# --- AWS ------------------------------------------------------------------------------
AWS_REGION = env_str("AWS_REGION", env_str("AWS_DEFAULT_REGION", "us-east-1"))
# Points boto3 at another endpoint (devcloud in the demo and tests); empty means AWS itself.
AWS_ENDPOINT_URL = env_str("AWS_ENDPOINT_URL", "")

# --- Terminal recordings (terminal.storage, terminal.chunks) ------------------------------------
# Where recordings are kept: the "recordings" storage. With PASSPORT_RECORDINGS_BUCKET set, an S3
# bucket through django-storages (the same endpoint and credentials as boto3 above), so every web
# process plays every recording and a lost web host loses nothing already uploaded; without it,
# files under PASSPORT_RECORDINGS_DIR (default MEDIA_ROOT), for a single-host install.
PASSPORT_RECORDINGS_BUCKET = env_str("PASSPORT_RECORDINGS_BUCKET", "")
if PASSPORT_RECORDINGS_BUCKET:
    STORAGES["recordings"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": PASSPORT_RECORDINGS_BUCKET,
            "endpoint_url": AWS_ENDPOINT_URL or None,
            "region_name": AWS_REGION,
            "file_overwrite": True,
            "querystring_auth": False,
            # Short timeouts and few retries of its own: terminal.chunks retries whole chunks.
            "client_config": BotoConfig(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2}),
        },
    }
else:
    _recordings_dir = env_str("PASSPORT_RECORDINGS_DIR", "")
    STORAGES["recordings"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # No location: MEDIA_ROOT, read when used.
        "OPTIONS": {"location": _recordings_dir} if _recordings_dir else {},
    }
# The bucket keeps every version under Object Lock (``manage.py ensure_recordings_bucket`` sets it
# as the bucket's default retention): nobody can remove a recording's chunks for this many days,
# the portal's own credentials included (a DELETE only hides one behind a delete marker, which the
# recordings check of ``verify_logbook`` reports). COMPLIANCE: not even the account's root can;
# GOVERNANCE: only with s3:BypassGovernanceRetention, which the portal must not have.
PASSPORT_RECORDINGS_RETENTION_DAYS = env_int("PASSPORT_RECORDINGS_RETENTION_DAYS", 2557 if PRODUCTION else 1)
PASSPORT_RECORDINGS_RETENTION_MODE = env_str("PASSPORT_RECORDINGS_RETENTION_MODE", "COMPLIANCE").upper()
if PASSPORT_RECORDINGS_RETENTION_MODE not in {"COMPLIANCE", "GOVERNANCE"}:
    raise ImproperlyConfigured("PASSPORT_RECORDINGS_RETENTION_MODE must be COMPLIANCE or GOVERNANCE.")
if PASSPORT_RECORDINGS_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("PASSPORT_RECORDINGS_RETENTION_DAYS must be at least 1 (Object Lock keeps days).")
# A running terminal uploads its recording in chunks: every this many seconds, or sooner when
# this many bytes are waiting; each chunk is tried this many times before storage counts as failed.
PASSPORT_RECORDING_CHUNK_SECONDS = env_int("PASSPORT_RECORDING_CHUNK_SECONDS", 3)
PASSPORT_RECORDING_CHUNK_BYTES = env_int("PASSPORT_RECORDING_CHUNK_BYTES", 1024 * 1024)
PASSPORT_RECORDING_UPLOAD_ATTEMPTS = env_int("PASSPORT_RECORDING_UPLOAD_ATTEMPTS", 4)
# An open terminal whose web process has not written its heartbeat for this long is presumed
# gone: the sweep (every PASSPORT_RECORDING_SWEEP_SECONDS) seals its recording as partial and
# terminates its Session Manager session.
PASSPORT_RECORDING_STALE_SECONDS = env_int("PASSPORT_RECORDING_STALE_SECONDS", 20)
# When recording storage fails to give back a chunk as the sweep reads such a terminal's recording
# (a timeout, a 5xx), the sweep leaves it for a later run rather than sealing a recording cut short
# by the blip; once the terminal has been silent this long it seals what could be read, its note
# naming the storage failure (so none stays open forever).
PASSPORT_RECORDING_SWEEP_UNREADABLE_SECONDS = env_int("PASSPORT_RECORDING_SWEEP_UNREADABLE_SECONDS", 3600)
# A CLI proxy connection with open ssh -L forwards reads the account's ports and destinations this
# often, and closes the forwards no longer allowed, should the admin's change not have reached it.
PASSPORT_PROXY_FORWARDS_RECHECK_SECONDS = env_int("PASSPORT_PROXY_FORWARDS_RECHECK_SECONDS", 30)
# A CLI proxy connection reads its request's state this often, and ends once the request is over or
# past its end time, should the ending's message not have reached it.
PASSPORT_PROXY_REQUEST_CHECK_SECONDS = env_int("PASSPORT_PROXY_REQUEST_CHECK_SECONDS", 10)
PASSPORT_RECORDING_SWEEP_SECONDS = env_int("PASSPORT_RECORDING_SWEEP_SECONDS", 10)
# How many sessions one person may have open at once (browser terminals, and the CLI proxy's
# connections and their shells and commands): on one grant, and overall (terminal.slots).
PASSPORT_MAX_SESSIONS_PER_GRANT = env_int("PASSPORT_MAX_SESSIONS_PER_GRANT", 4)
PASSPORT_MAX_SESSIONS_PER_PERSON = env_int("PASSPORT_MAX_SESSIONS_PER_PERSON", 10)
if PASSPORT_MAX_SESSIONS_PER_GRANT < 1 or PASSPORT_MAX_SESSIONS_PER_PERSON < 1:
    raise ImproperlyConfigured("PASSPORT_MAX_SESSIONS_PER_GRANT and _PER_PERSON must be at least 1.")
# When recording storage is unavailable: "refuse" new terminals (and close one whose storage
# fails mid-session), or "allow" them and write in the Logbook that they are unrecorded.
PASSPORT_RECORDING_UNAVAILABLE = env_str("PASSPORT_RECORDING_UNAVAILABLE", "refuse")
if PASSPORT_RECORDING_UNAVAILABLE not in ("refuse", "allow"):
    raise ImproperlyConfigured("PASSPORT_RECORDING_UNAVAILABLE must be 'refuse' or 'allow'.")
# --- Health and metrics (passport_portal/health) ----------------------------------------
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

# --- Passport -------------------------------------------------------------------------
# Ask AWS IAM (SimulatePrincipalPolicy) whether the person may StartSession/TerminateSession on
# each instance, before a request is accepted and before each connection. The unit tests run
# without AWS, so under PASSPORT_ENV=test it is off unless set explicitly.
PASSPORT_IAM_CHECK = env_bool("PASSPORT_IAM_CHECK", default=PASSPORT_ENV != "test")
# Open sessions are asked about again this often (and at once when the inventory sees an instance's
# tags change); an answer is kept this long per person and instance (terminal.services.iam_recheck).
PASSPORT_IAM_RECHECK_SECONDS = env_int("PASSPORT_IAM_RECHECK_SECONDS", 300)
PASSPORT_IAM_RECHECK_CACHE_SECONDS = env_int("PASSPORT_IAM_RECHECK_CACHE_SECONDS", 60)
CELERY_BEAT_SCHEDULE["recheck-iam"] = {
    "task": "workers.tasks.iam_recheck_all_sessions",
    "schedule": schedule(timedelta(seconds=PASSPORT_IAM_RECHECK_SECONDS)),
}
# The requester is warned by email this long before access ends.
PASSPORT_EXPIRY_WARNING_MINUTES = env_int("PASSPORT_EXPIRY_WARNING_MINUTES", 10)
# A request nobody approved (or not enough approvers, of several) within this many hours of being
# made expires unapproved: the expiry sweep ends it and it can no longer be approved.
PASSPORT_PENDING_REQUEST_HOURS = env_int("PASSPORT_PENDING_REQUEST_HOURS", 24)
if PASSPORT_PENDING_REQUEST_HOURS < 1:
    raise ImproperlyConfigured("PASSPORT_PENDING_REQUEST_HOURS must be at least 1.")
PASSPORT_BASE_URL = env_str("PASSPORT_BASE_URL", "http://localhost:8000")
PASSPORT_MIN_AGENT_VERSION = env_str("PASSPORT_MIN_AGENT_VERSION", "2.3.672.0")
# A browser terminal with no keystroke for this long is closed.
PASSPORT_TERMINAL_IDLE_SECONDS = env_int("PASSPORT_TERMINAL_IDLE_SECONDS", 900)
# The account role's maximum session duration: the longest scoped credentials may last.
PASSPORT_ROLE_MAX_SESSION_SECONDS = env_int("PASSPORT_ROLE_MAX_SESSION_SECONDS", 3600)
# How long scoped credentials last at most (AWS's minimum, 900 s, by default): they cannot be
# revoked, so short ones bound what survives a request that ends early.
PASSPORT_SCOPED_CREDENTIALS_SECONDS = env_int("PASSPORT_SCOPED_CREDENTIALS_SECONDS", 900)
PASSPORT_RUN_COMMAND_TIMEOUT = env_int("PASSPORT_RUN_COMMAND_TIMEOUT", 300)
PASSPORT_RUN_COMMAND_POLL_SECONDS = env_int("PASSPORT_RUN_COMMAND_POLL_MS", 500) / 1000
PASSPORT_GRANT_MAX_ATTEMPTS = env_int("PASSPORT_GRANT_MAX_ATTEMPTS", 5)
# A worker's claim on a grant is a heartbeat lease of PASSPORT_LEASE_SECONDS, renewed every third
# of it while the script runs (requests_app.services.leases); once a dead worker's lease has run
# out, the sweep (every PASSPORT_SWEEP_SECONDS) hands the work to another worker, so a claim is
# taken over within their sum (50 s by default). Lost tasks not under any lease are handed out
# again once the sweep has waited PASSPORT_SWEEP_GRACE_SECONDS for the original task.
PASSPORT_LEASE_SECONDS = env_int("PASSPORT_LEASE_SECONDS", 30)
PASSPORT_SWEEP_SECONDS = env_int("PASSPORT_SWEEP_SECONDS", 20)
PASSPORT_SWEEP_GRACE_SECONDS = env_int("PASSPORT_SWEEP_GRACE_SECONDS", 30)
PASSPORT_LOGBOOK_PAGE_SIZE = env_int("PASSPORT_LOGBOOK_PAGE_SIZE", 50)
# Refusals of clients nobody has signed in (SAML garbage...) are written once per source and
# reason per window, then counted (audit.refusals); past this many (source, reason) pairs in a
# window, further sources share one count, so a flood adds a bounded number of entries.
PASSPORT_REFUSAL_WINDOW_SECONDS = env_int("PASSPORT_REFUSAL_WINDOW_SECONDS", 300)
PASSPORT_REFUSAL_SOURCES_PER_WINDOW = env_int("PASSPORT_REFUSAL_SOURCES_PER_WINDOW", 20)
# How many of our own proxies append to X-Forwarded-For in front of the portal. 0: the header is
# ignored and a client is its REMOTE_ADDR (the header is whatever the client wrote).
PASSPORT_TRUSTED_PROXY_COUNT = env_int("PASSPORT_TRUSTED_PROXY_COUNT", 0)
ALLAUTH_TRUSTED_PROXY_COUNT = PASSPORT_TRUSTED_PROXY_COUNT
# The networks those proxies connect from (comma-separated CIDRs). From any other peer the
# forwarded headers (X-Forwarded-For, X-Forwarded-Proto) are dropped (passport_portal.proxies):
# a client that reaches a web process directly is its REMOTE_ADDR, over plain http.
PASSPORT_TRUSTED_PROXIES = [
    str(network) for network in networks_parse(env_str("PASSPORT_TRUSTED_PROXIES", "127.0.0.1/32,::1/128"))
]
# Wrong CLI sign-in codes one person may try per window; past it a code is not even looked up.
PASSPORT_CLI_CODE_ATTEMPTS = env_int("PASSPORT_CLI_CODE_ATTEMPTS", 10)
PASSPORT_CLI_CODE_WINDOW_SECONDS = env_int("PASSPORT_CLI_CODE_WINDOW_SECONDS", 600)
# CLI sign-ins one client address may start per minute (each one stores a pending code).
PASSPORT_CLI_STARTS_PER_MINUTE = env_int("PASSPORT_CLI_STARTS_PER_MINUTE", 20)
# Token polls (each locks a row) and reads of the CLI's release index one client address may make
# per minute, counted in the database like the starts: a CLI polls every 2 seconds while it waits.
PASSPORT_CLI_TOKEN_POLLS_PER_MINUTE = env_int("PASSPORT_CLI_TOKEN_POLLS_PER_MINUTE", 60)
PASSPORT_CLI_RELEASE_INDEX_READS_PER_MINUTE = env_int("PASSPORT_CLI_RELEASE_INDEX_READS_PER_MINUTE", 30)
PASSPORT_CLI_RELEASE_DOWNLOADS_PER_MINUTE = env_int("PASSPORT_CLI_RELEASE_DOWNLOADS_PER_MINUTE", 10)
# Changes (POST...) one signed-in person may send to the API per minute, by browser or CLI token
# (accounts/api_limits.py): most write a Logbook entry, each under the chain's head lock. A person
# clicking sends a few; the CLI one or two per connection.
PASSPORT_API_WRITES_PER_MINUTE = env_int("PASSPORT_API_WRITES_PER_MINUTE", 300)
# A person's inventory sync (page or API) of an account starts at most this long after the last one
# ended, and never while one runs (requests_app/services/inventory.py); the scheduled sync is apart.
PASSPORT_INVENTORY_SYNC_COOLDOWN_SECONDS = env_int("PASSPORT_INVENTORY_SYNC_COOLDOWN_SECONDS", 60)
# How long each web process reuses its listing of the published wheels (0: read them every time;
# the tests, which change the files under a running portal).
PASSPORT_CLI_RELEASE_INDEX_CACHE_SECONDS = env_int(
    "PASSPORT_CLI_RELEASE_INDEX_CACHE_SECONDS", 0 if PASSPORT_ENV == "test" else 30
)
# Published wheels of the `passport` CLI (`manage.py build_cli_wheel`), for `passport version --self-update`.
# With a bucket (by default the recordings bucket, under cli-wheels/), the "cli_wheels" storage: every
# web process lists and serves them (accounts.cli_wheel_store); without, files in PASSPORT_CLI_WHEEL_DIR.
PASSPORT_CLI_WHEEL_DIR = Path(env_str("PASSPORT_CLI_WHEEL_DIR", str(VAR_DIR / "cli-wheels")))
PASSPORT_CLI_WHEELS_BUCKET = env_str("PASSPORT_CLI_WHEELS_BUCKET", PASSPORT_RECORDINGS_BUCKET)
if PASSPORT_CLI_WHEELS_BUCKET:
    STORAGES["cli_wheels"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": PASSPORT_CLI_WHEELS_BUCKET,
            "location": "cli-wheels",
            "endpoint_url": AWS_ENDPOINT_URL or None,
            "region_name": AWS_REGION,
            "file_overwrite": True,
            "querystring_auth": False,
            "client_config": BotoConfig(connect_timeout=3, read_timeout=10, retries={"max_attempts": 3}),
        },
    }
# Encrypts the SSH CA's private keys at rest (AES-256-GCM under a key HKDF derives from
# this). Also read from PASSPORT_CA_ENCRYPTION_KEY_FILE. Losing it means new CA keys.
_DEV_CA_KEY = "dev-only-ca-encryption-key-do-not-use-in-production"
PASSPORT_CA_ENCRYPTION_KEY = (
    env_str("PASSPORT_CA_ENCRYPTION_KEY") if PRODUCTION else env_str("PASSPORT_CA_ENCRYPTION_KEY", _DEV_CA_KEY)
)
if PRODUCTION and (len(PASSPORT_CA_ENCRYPTION_KEY) < 32 or PASSPORT_CA_ENCRYPTION_KEY == _DEV_CA_KEY):
    raise ImproperlyConfigured("PASSPORT_CA_ENCRYPTION_KEY must be a random secret of at least 32 characters.")

# --- The Logbook's keys and its evidence bucket (audit/anchor) --------------------------
# Each entry's hash is an HMAC-SHA256 under the current Logbook key, named by its id in the
# entry; older keys stay configured (PASSPORT_LOGBOOK_OLD_KEYS, "id=secret,id=secret") so
# entries hashed before a rotation still verify. Never stored in the database.
_DEV_LOGBOOK_KEY = "dev-only-logbook-key-do-not-use-in-production-0123456789"
PASSPORT_LOGBOOK_KEY = (
    env_str("PASSPORT_LOGBOOK_KEY") if PRODUCTION else env_str("PASSPORT_LOGBOOK_KEY", _DEV_LOGBOOK_KEY)
)
PASSPORT_LOGBOOK_KEY_ID = env_str("PASSPORT_LOGBOOK_KEY_ID", "logbook-1")
PASSPORT_LOGBOOK_KEYS = logbook_keys_parse(
    current_id=PASSPORT_LOGBOOK_KEY_ID,
    current=PASSPORT_LOGBOOK_KEY,
    old=env_str("PASSPORT_LOGBOOK_OLD_KEYS", ""),
)
# Entries written before keyed hashes (key id "legacy-sha256") stay verifiable as plain SHA-256;
# pin where they end (migration audit 0005 prints the id) so no later entry can pass as one.
PASSPORT_LOGBOOK_LEGACY_UNTIL = (
    env_int("PASSPORT_LOGBOOK_LEGACY_UNTIL", 0) if env_str("PASSPORT_LOGBOOK_LEGACY_UNTIL", "").strip() else None
)
if PRODUCTION and (len(PASSPORT_LOGBOOK_KEY) < 32 or PASSPORT_LOGBOOK_KEY == _DEV_LOGBOOK_KEY):
    raise ImproperlyConfigured("PASSPORT_LOGBOOK_KEY must be a random secret of at least 32 characters.")
# Signs the checkpoints of the chain's head (Ed25519, PEM as `openssl genpkey -algorithm ed25519`
# writes it). Public keys of earlier signing keys (base64 of the 32 raw bytes, comma-separated)
# keep their checkpoints verifiable.
_DEV_LOGBOOK_SIGNING_KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIFOkGBoZbw++B0OA5Z3seImh+rjr+XZ4UeLFyRFzvlqR\n"
    "-----END PRIVATE KEY-----\n"
)
PASSPORT_LOGBOOK_SIGNING_KEY = (
    env_str("PASSPORT_LOGBOOK_SIGNING_KEY")
    if PRODUCTION
    else env_str("PASSPORT_LOGBOOK_SIGNING_KEY", _DEV_LOGBOOK_SIGNING_KEY)
)
if PRODUCTION and PASSPORT_LOGBOOK_SIGNING_KEY.strip() == _DEV_LOGBOOK_SIGNING_KEY.strip():
    raise ImproperlyConfigured("PASSPORT_LOGBOOK_SIGNING_KEY must be your own Ed25519 key, not the demo's.")
if PRODUCTION:
    # At start, not at the first checkpoint a minute later in a worker's log.
    ed25519_private_key_check("PASSPORT_LOGBOOK_SIGNING_KEY", PASSPORT_LOGBOOK_SIGNING_KEY)
PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS = env_list("PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS", [])
# The S3 bucket (Object Lock, COMPLIANCE mode) that keeps the signed checkpoints. The unit tests
# run without one (checkpoints off) unless a test sets it; the demo uses devcloud's S3.
PASSPORT_EVIDENCE_BUCKET = (
    env_str("PASSPORT_EVIDENCE_BUCKET")
    if PRODUCTION
    else env_str("PASSPORT_EVIDENCE_BUCKET", "" if PASSPORT_ENV == "test" else "passport-evidence")
)
if PRODUCTION and not PASSPORT_EVIDENCE_BUCKET.strip():
    raise ImproperlyConfigured(
        "PASSPORT_EVIDENCE_BUCKET is empty: production keeps the Logbook's signed checkpoints in it (S3, Object Lock)."
    )
PASSPORT_EVIDENCE_PREFIX = env_str("PASSPORT_EVIDENCE_PREFIX", "logbook/checkpoints/")
PASSPORT_EVIDENCE_RETENTION_DAYS = env_int("PASSPORT_EVIDENCE_RETENTION_DAYS", 2557 if PRODUCTION else 1)
# GETs in flight at once while verify_logbook reads every checkpoint in the bucket (a heartbeat a
# minute is about 525,600 objects a year; one at a time, hours of waiting on the network).
PASSPORT_EVIDENCE_READ_CONCURRENCY = env_int("PASSPORT_EVIDENCE_READ_CONCURRENCY", 16)
if PASSPORT_EVIDENCE_READ_CONCURRENCY < 1:
    raise ImproperlyConfigured("PASSPORT_EVIDENCE_READ_CONCURRENCY must be at least 1.")
# A checkpoint at least this often while entries are written; an entry older than the grace
# with no checkpoint covering it within the grace is a "missing checkpoint".
PASSPORT_LOGBOOK_CHECKPOINT_SECONDS = env_int("PASSPORT_LOGBOOK_CHECKPOINT_SECONDS", 60)
PASSPORT_LOGBOOK_CHECKPOINT_GRACE_MINUTES = env_int("PASSPORT_LOGBOOK_CHECKPOINT_GRACE_MINUTES", 5)
# Stretches the operator knows checkpointing was down or a clock stepped (maintenance, an outage), as START/END
# pairs: a checkpoint gap or missing checkpoint wholly inside one is shown as acknowledged and
# does not fail verification. Set where the web and workers run, not in the database.
PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS = time_windows_parse(
    "PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS", env_list("PASSPORT_LOGBOOK_ACKNOWLEDGED_GAPS", [])
)

REST_FRAMEWORK = {
    # Bearer first: its WWW-Authenticate header makes a missing or expired token a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: the browsable renderer's pages run inline script (refused by the CSP) and need a
    # queryset on every view; people read the API at /api/docs/ instead.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "passport_portal.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "core.api.PassportCursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "passport_portal.api.exception_handlers.exception_handler",
    # No DEFAULT_THROTTLE_RATES: DRF's throttles count in the cache, one per process here; the
    # limits are counted in the database (audit.throttle): a signed-in person's changes by this
    # default, the anonymous endpoints' by their own throttles (accounts.cli_apis).
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api_limits.PersonWriteThrottle"],
    # Without it DRF takes a client's own X-Forwarded-For as its address.
    "NUM_PROXIES": PASSPORT_TRUSTED_PROXY_COUNT,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Passport API",
    "DESCRIPTION": "Just-in-time access to cloud servers: requests, approvals, grants and the Logbook.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # One name for the account's CLI session mode (``cli_sessions`` of an account, ``sessions`` of a certificate).
    "ENUM_NAME_OVERRIDES": {"CliSessionsEnum": "accounts.models.AwsAccount.CliSessions"},
}

# --- Security -------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# templates/403_csrf.html, or one line for an htmx request (passport_portal/htmx_refusals.py).
CSRF_FAILURE_VIEW = "passport_portal.htmx_refusals.csrf_failure"
SESSION_COOKIE_AGE = env_int("PASSPORT_SESSION_SECONDS", 8 * 3600)
# Django moves a session's expiry at each write; this is the end no write moves: a signed-in
# session is signed out this long after its sign-in (or earlier, when its IdP says so).
PASSPORT_SESSION_MAX_AGE_SECONDS = env_int("PASSPORT_SESSION_MAX_AGE_SECONDS", SESSION_COOKIE_AGE)
if SESSION_COOKIE_AGE < 1 or PASSPORT_SESSION_MAX_AGE_SECONDS < 1:
    raise ImproperlyConfigured("PASSPORT_SESSION_SECONDS and PASSPORT_SESSION_MAX_AGE_SECONDS must be at least 1.")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp; passport_portal/csp.py): everything from the portal itself,
# no inline script, style or event handler, no eval, no plugins, no framing, no <base>. The pages
# keep their scripts and styles in static files; the browser tests fail on any violation.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "frame-ancestors": [csp.NONE],
        # Forms post to the portal only (a SAML sign-out adds its IdP: passport_portal/csp.py).
        "form-action": [csp.SELF],
    }
}
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("PASSPORT_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("PASSPORT_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
# Behind a proxy that ends TLS, the portal sees plain http and the proxy's X-Forwarded-Proto says
# what the browser used. Anyone can send that header, so it counts only where the operator says
# a proxy sets it (and drops the client's own); otherwise the request's own scheme decides.
if env_bool("PASSPORT_TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# How mails leave. The demo prints them to its log. Production sends them through a mail server:
# a password-reset mail carries a link that sets a break-glass site admin's password, so it must
# never end in the process log, a file on the host, memory or nowhere.
_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_BACKEND = env_str(
    "PASSPORT_EMAIL_BACKEND", _SMTP_BACKEND if PRODUCTION else "django.core.mail.backends.console.EmailBackend"
).strip()
_LOCAL_EMAIL_BACKENDS = {
    f"django.core.mail.backends.{name}.EmailBackend" for name in ("console", "filebased", "locmem", "dummy")
}
if PRODUCTION and EMAIL_BACKEND in _LOCAL_EMAIL_BACKENDS:
    raise ImproperlyConfigured(
        f"PASSPORT_EMAIL_BACKEND={EMAIL_BACKEND} keeps mails on this host (password-reset links in a log or a "
        "file) or drops them: production needs a mail server. Leave PASSPORT_EMAIL_BACKEND unset (SMTP) and set "
        "PASSPORT_EMAIL_HOST."
    )
EMAIL_HOST = env_str("PASSPORT_EMAIL_HOST", "")
if PRODUCTION and EMAIL_BACKEND == _SMTP_BACKEND and not EMAIL_HOST:
    raise ImproperlyConfigured(
        "PASSPORT_EMAIL_HOST is required in production: the mail server (SMTP) the portal's mails leave through."
    )
EMAIL_HOST = EMAIL_HOST or "localhost"
EMAIL_PORT = env_int("PASSPORT_EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("PASSPORT_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("PASSPORT_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("PASSPORT_EMAIL_USE_TLS", False)  # STARTTLS, usually on port 587
EMAIL_USE_SSL = env_bool("PASSPORT_EMAIL_USE_SSL", False)  # TLS from the start, usually on port 465
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("PASSPORT_EMAIL_USE_TLS and PASSPORT_EMAIL_USE_SSL: set one, not both.")
# Seconds per attempt to reach the server or send a message: a server that hangs must not hold a
# worker (or, with the broker down, a web request) for long, nor outlast a notification's claim.
EMAIL_TIMEOUT = env_int("PASSPORT_EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("PASSPORT_EMAIL_FROM", "Passport <passport@localhost>")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # One record, one line, whatever a message quotes (core.logs).
    "filters": {"one_line": {"()": "core.logs.OneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["one_line"]}},
    "root": {"handlers": ["console"], "level": env_str("PASSPORT_LOG_LEVEL", "INFO")},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "celery": {"level": env_str("PASSPORT_CELERY_LOG_LEVEL", "WARNING")},
        # Keeps the worker's "ready." line, which process supervisors and the tests wait for.
        "celery.apps.worker": {"level": "INFO"},
    },
}

if PASSPORT_ENV == "test":
    # Hashing test personas' passwords with PBKDF2 would dominate the suite's run time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
