"""The accounts where AWS credentials handed out before a switch may still start sessions the account
no longer allows: ``accounts_with_credentials_withdrawn``, which the frequent sweep
(``workers.tasks.end_credential_sessions``, every 30 s) runs ``sessions_end_withdrawn`` for.

STS cannot revoke credentials (``access_request_issue_aws_credentials``): those handed out while the
account was direct and not moderated start new Session Manager sessions, which no approver watches and
nothing records, until they expire (``PASSPORT_SCOPED_CREDENTIALS_SECONDS``, 15 minutes). The switch's
own run ends what is open then, and no credentials are issued afterwards (they are refused on a
recorded or moderated account); the sweep ends each new session within its period, as long as the
credentials (``AccessRequest.aws_credentials_until``, plus ``CREDENTIALS_MARGIN``) may start one.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from accounts.models import AwsAccount
from requests_app.models import AccessRequest, RequestStatus
from requests_app.services.provisioning.sessions import CREDENTIALS_MARGIN


def accounts_with_credentials_withdrawn(*, now: datetime | None = None) -> list[int]:
    """The ids of the accounts whose sessions are moderated or whose CLI sessions are recorded that
    have an active request whose AWS credentials have not expired (with the margin), so may still
    start a session there. One query, on the index of active requests' credential expiries
    (``request_active_credentials``): none when no request of any account has live credentials."""
    at = now or timezone.now()
    account_ids = (
        AccessRequest.objects.filter(
            Q(account__require_session_join=True) | Q(account__cli_sessions=AwsAccount.CliSessions.RECORD),
            status=RequestStatus.ACTIVE,
            aws_credentials_until__gt=at - CREDENTIALS_MARGIN,
        )
        .order_by("account_id")
        .values_list("account_id", flat=True)
        .distinct()
    )
    return list(account_ids)
