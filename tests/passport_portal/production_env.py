"""The Logbook's secrets that production settings require, for tests that start them in a subprocess."""

from __future__ import annotations

PRODUCTION_LOGBOOK_ENV = {
    "PASSPORT_LOGBOOK_KEY": "l" * 40,
    "PASSPORT_EVIDENCE_BUCKET": "passport-evidence-test",
    # A key made for these tests only (not the demo's, which production refuses).
    "PASSPORT_LOGBOOK_SIGNING_KEY": (
        "-----BEGIN PRIVATE KEY-----\n"
        "MC4CAQAwBQYDK2VwBCIEIMRy+/5ArDgw06RBA5DyFsJ73cKlhtK4ll+QtOz5Eo5w\n"
        "-----END PRIVATE KEY-----\n"
    ),
}
