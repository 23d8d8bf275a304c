"""Putting short-lived users on instances and taking them off again (``create``, each attempt's
outcome settled in ``settle``; ``remove``), keeping each host's account expiry at its request's
end (``expiry``), ending the person's sessions when access ends and those left by a failed try
later (``sessions``), and finding work whose task was lost (``upkeep``). ``common`` holds what
they share."""

from requests_app.services.provisioning.common import Outcome
from requests_app.services.provisioning.create import (
    access_request_begin_provisioning,
    grant_claim_for_provisioning,
    grant_provision,
    grants_provision,
)
from requests_app.services.provisioning.expiry import (
    grant_sync_account_expiry,
    grants_needing_expiry_sync,
)
from requests_app.services.provisioning.remove import grant_deprovision, grants_deprovision
from requests_app.services.provisioning.sessions import (
    SessionsEnd,
    grant_end_left_sessions,
    grants_with_sessions_left,
)
from requests_app.services.provisioning.upkeep import (
    StuckWork,
    grant_refresh_authorized_keys,
    grants_needing_key_refresh,
    stuck_work,
)

__all__ = [
    "Outcome",
    "SessionsEnd",
    "StuckWork",
    "access_request_begin_provisioning",
    "grant_claim_for_provisioning",
    "grant_deprovision",
    "grant_end_left_sessions",
    "grant_provision",
    "grant_refresh_authorized_keys",
    "grant_sync_account_expiry",
    "grants_deprovision",
    "grants_needing_expiry_sync",
    "grants_needing_key_refresh",
    "grants_provision",
    "grants_with_sessions_left",
    "stuck_work",
]
