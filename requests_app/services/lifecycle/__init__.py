"""The access-request lifecycle: one service per transition.

Every transition is a conditional UPDATE on the current status, so a double click, two
approvers at once or a duplicate task applies it once; the loser sees the new state.
Work for the fleet is enqueued only after commit.
"""

from __future__ import annotations

from requests_app.services.lifecycle.cancel import access_request_cancel
from requests_app.services.lifecycle.common import (
    DEFAULT_DURATION,
    MAX_TOTAL_DURATION,
    MIN_DURATION,
    REASON_MAX,
    TICKET_RE,
    instance_problem,
)
from requests_app.services.lifecycle.create import access_request_create
from requests_app.services.lifecycle.decide import (
    access_request_approvals_discounted,
    access_request_approve,
    access_request_reject,
)
from requests_app.services.lifecycle.ending import (
    access_request_complete,
    access_request_revoke_if_not_admin,
    access_request_settle,
    access_requests_revoke_for_memberships,
    access_requests_revoke_for_person,
)
from requests_app.services.lifecycle.expire import (
    access_request_expire,
    access_requests_claim_due,
    access_requests_expire,
    access_requests_expire_due,
    due_for_expiry,
)
from requests_app.services.lifecycle.extend import access_request_extend

__all__ = [
    "DEFAULT_DURATION",
    "MAX_TOTAL_DURATION",
    "MIN_DURATION",
    "REASON_MAX",
    "TICKET_RE",
    "access_request_approvals_discounted",
    "access_request_approve",
    "access_request_cancel",
    "access_request_complete",
    "access_request_create",
    "access_request_expire",
    "access_request_extend",
    "access_request_reject",
    "access_request_revoke_if_not_admin",
    "access_request_settle",
    "access_requests_claim_due",
    "access_requests_expire",
    "access_requests_expire_due",
    "access_requests_revoke_for_memberships",
    "access_requests_revoke_for_person",
    "due_for_expiry",
    "instance_problem",
]
