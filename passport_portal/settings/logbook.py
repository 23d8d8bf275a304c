"""The Logbook's keys and its evidence bucket (audit/anchor)."""

from __future__ import annotations

import base64
import contextlib

from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import (
    ed25519_private_key_check,
    env_int,
    env_list,
    env_str,
    logbook_key_pins_parse,
    logbook_keys_parse,
    production_secret_check,
    production_secrets_apart,
    time_windows_parse,
)
from passport_portal.settings.environment import PASSPORT_ENV, PASSPORT_USERNAME_KEY, PRODUCTION, SECRET_KEY
from passport_portal.settings.portal import PASSPORT_CA_ENCRYPTION_KEY

# Each entry's hash is an HMAC-SHA256 under the current Logbook key, named by its id in the
# entry; older keys stay configured (PASSPORT_LOGBOOK_OLD_KEYS, "id=secret,id=secret", the most
# recently retired first) so entries hashed before a rotation still verify, and only those: once an
# entry under a newer key is in the chain, none under an older one may follow (audit.key_order).
# Never stored in the database.
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
# The end of a rotation's overlap (a process not yet restarted went on writing under the old key
# after entries under the new one): "id=entry,id=entry", the last entry each old key may sign; a
# pinned key is accepted up to its entry wherever it stands, and nowhere after it.
PASSPORT_LOGBOOK_OLD_KEYS_UNTIL = logbook_key_pins_parse(
    env_str("PASSPORT_LOGBOOK_OLD_KEYS_UNTIL", ""),
    old_ids=[key_id for key_id in PASSPORT_LOGBOOK_KEYS if key_id != PASSPORT_LOGBOOK_KEY_ID],
)
# Entries written before keyed hashes (key id "legacy-sha256") stay verifiable as plain SHA-256;
# pin where they end (migration audit 0005 prints the id) so no later entry can pass as one.
PASSPORT_LOGBOOK_LEGACY_UNTIL = (
    env_int("PASSPORT_LOGBOOK_LEGACY_UNTIL", 0) if env_str("PASSPORT_LOGBOOK_LEGACY_UNTIL", "").strip() else None
)
if PRODUCTION:
    production_secret_check("PASSPORT_LOGBOOK_KEY", PASSPORT_LOGBOOK_KEY, _DEV_LOGBOOK_KEY)
    # The last of the four random secrets read (environment.py, portal.py, here): each its own.
    production_secrets_apart(
        {
            "PASSPORT_SECRET_KEY": SECRET_KEY,
            "PASSPORT_USERNAME_KEY": PASSPORT_USERNAME_KEY,
            "PASSPORT_CA_ENCRYPTION_KEY": PASSPORT_CA_ENCRYPTION_KEY,
            "PASSPORT_LOGBOOK_KEY": PASSPORT_LOGBOOK_KEY,
        }
    )
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
PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS = env_list("PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS", [])
if PRODUCTION:
    # At start, not at the first checkpoint a minute later in a worker's log. The demo's key is
    # published: anyone could sign checkpoints with it. Compared as keys (raw public bytes), not as
    # PEM text, which CRLF line ends or another wrapping of the base64 would change.
    _demo_public = ed25519_private_key_check("demo", _DEV_LOGBOOK_SIGNING_KEY)
    if ed25519_private_key_check("PASSPORT_LOGBOOK_SIGNING_KEY", PASSPORT_LOGBOOK_SIGNING_KEY) == _demo_public:
        raise ImproperlyConfigured("PASSPORT_LOGBOOK_SIGNING_KEY must be your own Ed25519 key, not the demo's.")
    for _old in PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS:
        with contextlib.suppress(ValueError):  # not base64: audit.anchor.signing refuses it by name
            if base64.b64decode(_old) == _demo_public:
                raise ImproperlyConfigured(
                    "PASSPORT_LOGBOOK_OLD_SIGNING_PUBLIC_KEYS lists the demo's public key: checkpoints anyone "
                    "can sign would verify. Remove it."
                )
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
