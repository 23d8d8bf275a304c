"""An active request with a ready grant, set straight in the database, and the CLI signed in; the
Logbook's entry of a session the worker ended, waited for."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from tests.cli.conftest import Cli
from tests.factories import make_account, make_instance, make_membership, make_user
from tests.stack import wait_for


def active_grant(cli: Cli, mode: str, *, account_name: str = "Acme Production") -> Grant:
    """alice's active request for web-1 on an account whose CLI sessions are ``mode``; her CLI signed in."""
    alice = make_user("alice")
    prod = make_account(name=account_name)
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=mode)
    make_membership(alice, prod, "admin")
    web = make_instance(prod, "web-1")
    access_request = services.access_request_create(requester=alice, account=prod, instances=[web], reason="pin")
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    assert cli.login(alice).returncode == 0
    return Grant.objects.select_related("instance").get(request=access_request)


def session_terminated(request_id: int, session_id: str, *, what: str) -> LogbookEntry:
    """The ``session.terminated`` entry of ``session_id``, once the worker has written it (30 s at most)."""
    entry: LogbookEntry = wait_for(
        lambda: LogbookEntry.objects.filter(
            action="session.terminated", request_id=request_id, detail__session_id=session_id
        ).first(),
        what=what,
        timeout=30,
    )
    return entry
