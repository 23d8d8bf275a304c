"""Two workers claiming one grant at the same instant: exactly one wins.

Reproduced deterministically with two real PostgreSQL connections: the first claim holds
its row lock uncommitted until the second claim is seen waiting for that lock, then commits.
The loser's UPDATE must re-check the grant's state against the winner's row and claim
nothing; with the grant's conditions hidden in a self-join subquery it claimed it again.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from requests_app import services
from requests_app.models import AccessRequest, Grant, RequestStatus
from tests.factories import make_account, make_instance, make_membership, make_user
from tests.stack import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db")]


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE %%grant%%'"
        )
        return cursor.fetchone()[0] > 0


def test_only_one_of_two_simultaneous_claims_wins() -> None:
    account = make_account()
    requester = make_user("alice")
    make_membership(requester, account, "admin")
    access_request = services.access_request_create(
        requester=requester, account=account, instances=[make_instance(account, "web-1")], reason="race"
    )
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.PROVISIONING)
    grant = access_request.grants.get()
    lease_until = timezone.now() + timedelta(minutes=5)
    results: dict[str, bool] = {}
    first_claimed, release = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = services.grant_claim_for_provisioning(grant_id=grant.pk, lease_until=lease_until)
                first_claimed.set()
                release.wait(30)  # hold the row lock, uncommitted
        finally:
            connections.close_all()

    def second() -> None:
        try:
            results["second"] = services.grant_claim_for_provisioning(grant_id=grant.pk, lease_until=lease_until)
        finally:
            connections.close_all()

    winner = threading.Thread(target=first)
    winner.start()
    assert first_claimed.wait(30)
    loser = threading.Thread(target=second)
    loser.start()
    wait_for(_waiting_on_a_lock, timeout=30, what="the second claim to wait for the first one's row lock")
    release.set()
    winner.join(30)
    loser.join(30)

    assert results == {"first": True, "second": False}
    assert Grant.objects.get(pk=grant.pk).attempts == 1
