"""What requests announce to the apps above them (which the requests app must not import)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that begins ending a request, with ``request_id`` and
# ``end_reason``: the terminal app closes the request's open browser terminals on commit.
request_ending = Signal()
# The same for many requests ending at once (the expiry sweep's batch), with ``request_ids``
# and ``end_reason``: one question to the terminal app instead of one per request.
requests_ending = Signal()
