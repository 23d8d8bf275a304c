"""The portal's own knobs: IAM checks, grants and leases, refusals, proxies, the CLI, the SSH CA's key."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from botocore.config import Config as BotoConfig
from celery.schedules import schedule
from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import env_bool, env_int, env_str, production_secret_check
from passport_portal.proxies import networks_parse
from passport_portal.settings.broker import CELERY_BEAT_SCHEDULE
from passport_portal.settings.environment import PASSPORT_ENV, PRODUCTION, VAR_DIR
from passport_portal.settings.storage import STORAGES
from passport_portal.settings.terminal import AWS_ENDPOINT_URL, AWS_REGION, PASSPORT_RECORDINGS_BUCKET

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
# Requests one person (all of their users: the same email) may have waiting for approval at once;
# each one mails every approver of its account, so past it a new one is refused
# (requests_app/services/lifecycle/create.py). One an approval policy approves at once never waits.
PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON = env_int("PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON", 10)
if PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON < 1:
    raise ImproperlyConfigured("PASSPORT_MAX_PENDING_REQUESTS_PER_PERSON must be at least 1.")
PASSPORT_BASE_URL = env_str("PASSPORT_BASE_URL", "http://localhost:8000")
PASSPORT_MIN_AGENT_VERSION = env_str("PASSPORT_MIN_AGENT_VERSION", "2.3.672.0")
# The KMS key (an alias, a key id or an ARN, found in each account and region) that encrypts a
# Windows password while it waits in Parameter Store for its script. Empty: the account's aws/ssm
# key, which every principal of the account may decrypt through Parameter Store (check --deploy
# warns, passport.W005); "alias/aws/ssm" says so on purpose.
PASSPORT_HANDOFF_KMS_KEY = env_str("PASSPORT_HANDOFF_KMS_KEY", "")
if PASSPORT_HANDOFF_KMS_KEY and not re.fullmatch(
    r"alias/[A-Za-z0-9/_-]{1,250}|(mrk-)?[0-9a-f-]{32,36}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]{1,250}",
    PASSPORT_HANDOFF_KMS_KEY,
):
    raise ImproperlyConfigured(
        f"PASSPORT_HANDOFF_KMS_KEY={PASSPORT_HANDOFF_KMS_KEY!r}: a KMS alias (alias/passport-handoff), key id or ARN."
    )
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
# SAML sign-ins one client address may start per minute in a browser with no session: each such
# start stores a new one (the AuthnRequest's id, for the answer to match), a row in the database
# until the hourly sweep deletes it once expired (accounts/saml/views.py, accounts/session_lifetime.py).
# High enough for an office behind one address signing in at the start of the day.
PASSPORT_SAML_STARTS_PER_MINUTE = env_int("PASSPORT_SAML_STARTS_PER_MINUTE", 120)
if PASSPORT_SAML_STARTS_PER_MINUTE < 1:
    raise ImproperlyConfigured("PASSPORT_SAML_STARTS_PER_MINUTE must be at least 1.")
# Changes (POST...) one signed-in person may send to the API per minute, by browser or CLI token
# (accounts/api_limits.py): most write a Logbook entry, each under the chain's head lock. A person
# clicking sends a few; the CLI one or two per connection.
PASSPORT_API_WRITES_PER_MINUTE = env_int("PASSPORT_API_WRITES_PER_MINUTE", 300)
# Logbook exports (CSV, JSON Lines) one signed-in person may take per hour (audit/export_limits.py):
# each reads the whole filtered Logbook. An auditor at work takes a few.
PASSPORT_LOGBOOK_EXPORTS_PER_HOUR = env_int("PASSPORT_LOGBOOK_EXPORTS_PER_HOUR", 30)
if PASSPORT_LOGBOOK_EXPORTS_PER_HOUR < 1:
    raise ImproperlyConfigured("PASSPORT_LOGBOOK_EXPORTS_PER_HOUR must be at least 1.")
# Pages of the Logbook one signed-in person may read per minute, by the review page (whole page or
# its htmx results) or the REST list (GET /api/logbook/), one count (audit/list_limits.py). An
# auditor reading, or a tool taking the newest entries, needs a few (the page does not poll); the
# whole Logbook is for the exports.
PASSPORT_LOGBOOK_PAGES_PER_MINUTE = env_int("PASSPORT_LOGBOOK_PAGES_PER_MINUTE", 60)
if PASSPORT_LOGBOOK_PAGES_PER_MINUTE < 1:
    raise ImproperlyConfigured("PASSPORT_LOGBOOK_PAGES_PER_MINUTE must be at least 1.")
# Recordings one signed-in person may play, download or search per minute, one count
# (terminal/read_limits.py): each reads a whole recording back (a search, every transcript it
# shows) and writes recording.viewed to the Logbook. Watching one is two (the page, its download).
PASSPORT_RECORDING_READS_PER_MINUTE = env_int("PASSPORT_RECORDING_READS_PER_MINUTE", 30)
if PASSPORT_RECORDING_READS_PER_MINUTE < 1:
    raise ImproperlyConfigured("PASSPORT_RECORDING_READS_PER_MINUTE must be at least 1.")
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
if PRODUCTION:
    production_secret_check("PASSPORT_CA_ENCRYPTION_KEY", PASSPORT_CA_ENCRYPTION_KEY, _DEV_CA_KEY)
