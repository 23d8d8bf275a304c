"""The access-request app's models, one module per model family; everything is importable from here.

``instances`` the inventory cache, ``requests`` access requests, ``grants`` their grants,
``sweeps`` the periodic tasks' failures, ``usernames`` who has which OS username.
"""

from requests_app.models.grants import GRANT_STATES_NEEDING_CLEANUP, Grant, GrantQuerySet, GrantStatus
from requests_app.models.instances import Instance, host_kind_label
from requests_app.models.requests import (
    DECISION_NOTE_MAX,
    LIVE_REQUEST_STATUSES,
    TERMINAL_REQUEST_STATUSES,
    AccessRequest,
    AccessRequestQuerySet,
    EndReason,
    RequestStatus,
    in_force_q,
)
from requests_app.models.sweeps import SweepFailure
from requests_app.models.usernames import OsUsername

__all__ = [
    "DECISION_NOTE_MAX",
    "GRANT_STATES_NEEDING_CLEANUP",
    "LIVE_REQUEST_STATUSES",
    "TERMINAL_REQUEST_STATUSES",
    "AccessRequest",
    "AccessRequestQuerySet",
    "EndReason",
    "Grant",
    "GrantQuerySet",
    "GrantStatus",
    "Instance",
    "OsUsername",
    "RequestStatus",
    "SweepFailure",
    "host_kind_label",
    "in_force_q",
]
