"""Every change of state in the access-request domain goes through these functions."""

from requests_app.services.credentials import (
    access_request_issue_aws_credentials,
    grant_issue_certificate,
    grant_reveal_password,
    grant_start_session,
)
from requests_app.services.inventory import SyncResult, inventory_sync
from requests_app.services.lifecycle import (
    DEFAULT_DURATION,
    MAX_TOTAL_DURATION,
    MIN_DURATION,
    access_request_approve,
    access_request_cancel,
    access_request_complete,
    access_request_create,
    access_request_expire,
    access_request_extend,
    access_request_reject,
    access_request_settle,
    access_requests_expire_due,
    due_for_expiry,
    instance_problem,
)
from requests_app.services.provisioning import (
    Outcome,
    access_request_begin_provisioning,
    grant_claim_for_provisioning,
    grant_deprovision,
    grant_provision,
    grant_refresh_authorized_keys,
    grants_needing_key_refresh,
    stuck_work,
)
from requests_app.services.reconcile import ReconcileResult, reconcile_account
from requests_app.services.sweeps import SweepItem, sweep_backed_off, sweep_each, sweep_run

__all__ = [
    "DEFAULT_DURATION",
    "MAX_TOTAL_DURATION",
    "MIN_DURATION",
    "Outcome",
    "ReconcileResult",
    "SweepItem",
    "SyncResult",
    "access_request_approve",
    "access_request_begin_provisioning",
    "access_request_cancel",
    "access_request_complete",
    "access_request_create",
    "access_request_expire",
    "access_request_extend",
    "access_request_issue_aws_credentials",
    "access_request_reject",
    "access_request_settle",
    "access_requests_expire_due",
    "due_for_expiry",
    "grant_claim_for_provisioning",
    "grant_deprovision",
    "grant_issue_certificate",
    "grant_provision",
    "grant_refresh_authorized_keys",
    "grant_reveal_password",
    "grant_start_session",
    "grants_needing_key_refresh",
    "instance_problem",
    "inventory_sync",
    "reconcile_account",
    "stuck_work",
    "sweep_backed_off",
    "sweep_each",
    "sweep_run",
]
