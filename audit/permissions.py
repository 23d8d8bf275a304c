"""Who may read the Logbook.

A rule about the person alone (an auditor or a site admin), so it lives with the Logbook,
below ``accounts``; ``accounts.permissions`` re-uses it for everything else that follows
the Logbook's readers (terminal recordings, the navigation).
"""

from __future__ import annotations

from typing import Any


def can_review_logbook(user: Any) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or getattr(user, "is_auditor", False)))
