"""What requests announce to the apps above them (which the requests app must not import)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that begins ending a request, with ``request_id`` and
# ``end_reason``: the terminal app closes the request's open browser terminals on commit.
request_ending = Signal()
