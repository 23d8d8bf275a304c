"""What the CA announces to the apps above it (which it must not import)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that retired a user CA key (``ca_retire``, forced or not), with
# ``ca_key_id`` and ``fingerprint`` (``SHA256:…``): hosts stop trusting it once authorized_keys is
# rewritten, but sshd never re-checks a connection it let in, so the terminal app ends the open
# browser terminals and CLI proxy connections that logged in with a certificate it signed.
ca_key_retired = Signal()
