"""Showing a short-lived user's credentials to the one person they were made for: what logs them
in (``logins``: SSH certificates, the Windows password), the Session Manager sessions started for
them (``sessions``), and what those and their AWS credentials (``services.aws_credentials``) share
(``common``)."""

from requests_app.services.credentials.common import (
    ACCOUNT_NAMES_ANOTHER,
    MODERATED,
    MODERATION_ON,
    NOW_RECORDED,
    PORT_WITHDRAWN,
    RECORDING_VIAS,
    REGION_TAKEN_OFF,
    SIGN_IN_EXPIRED,
    SIGN_IN_REVOKED,
    SSH_PORT,
    assume_scoped,
    check_may_use,
    is_moderated,
    moderated_refusal,
    request_fleet_or_refuse,
)
from requests_app.services.credentials.logins import (
    certificate_principal,
    grant_issue_certificate,
    grant_reveal_password,
)
from requests_app.services.credentials.sessions import grant_start_session

__all__ = [
    "ACCOUNT_NAMES_ANOTHER",
    "MODERATED",
    "MODERATION_ON",
    "NOW_RECORDED",
    "PORT_WITHDRAWN",
    "RECORDING_VIAS",
    "REGION_TAKEN_OFF",
    "SIGN_IN_EXPIRED",
    "SIGN_IN_REVOKED",
    "SSH_PORT",
    "assume_scoped",
    "certificate_principal",
    "check_may_use",
    "grant_issue_certificate",
    "grant_reveal_password",
    "grant_start_session",
    "is_moderated",
    "moderated_refusal",
    "request_fleet_or_refuse",
]
