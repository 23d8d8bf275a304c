"""AWS's endpoint and region, terminal recordings (where and how they are kept) and terminal sessions."""

from __future__ import annotations

from botocore.config import Config as BotoConfig
from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import env_int, env_str
from passport_portal.settings.environment import PRODUCTION
from passport_portal.settings.storage import STORAGES

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
# How many ssh -L connections one CLI proxy connection may have open at once (each holds memory in
# the web process, and the cap on open sessions counts a connection with only forwards once); past
# it a new one is refused (terminal.proxy.server).
PASSPORT_PROXY_MAX_FORWARDS = env_int("PASSPORT_PROXY_MAX_FORWARDS", 32)
if PASSPORT_PROXY_MAX_FORWARDS < 1:
    raise ImproperlyConfigured("PASSPORT_PROXY_MAX_FORWARDS must be at least 1.")
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
