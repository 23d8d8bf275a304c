"""AWS credentials being issued while a site admin makes the account's sessions moderated (and its
CLI sessions recorded), each on its own PostgreSQL connection, as two processes would.

Neither lets credentials through: their sessions would never pass the portal. The moderation and
recorded checks are asked before STS is, and again once it answered, on the account's row held
until the credentials are recorded (``aws_credentials_until``): an admin's change committed during
the STS call refuses them, and one that comes after they were recorded waits for them, so that the
withdrawal it sends finds their sessions. Only the AWS boundary (the fleet's ``assume_scoped``, STS)
is replaced. The race helpers are ``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import AwsAccount
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import ScopedCredentials
from requests_app import services
from requests_app.models import AccessRequest
from requests_app.services import aws_credentials
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.audit.admin_forms import form_data, superuser_client
from tests.audit.test_admin_trail_accounts import ACCOUNTS
from tests.conftest import World
from tests.factories import make_active_request
from tests.fakes.fleet import FakeFleet
from workers import tasks

pytestmark = pytest.mark.usefixtures("fleet")


@pytest.fixture
def withdrawals(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The accounts ``end_withdrawn_sessions`` was sent for (recorded, not run)."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.end_withdrawn_sessions, "delay", sent.append)
    return sent


def _direct_and_active(world: World) -> AccessRequest:
    AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    access_request = make_active_request(world.requester, world.prod, world.web)
    return AccessRequest.objects.select_related("account").get(pk=access_request.pk)


def _admin_moderates(world: World) -> Callable[[], int]:
    """The site admin's post of the account's page: sessions moderated, CLI sessions recorded."""
    client, _root = superuser_client()
    url = f"{ACCOUNTS}{world.prod.pk}/change/"
    data = form_data(client, url, cli_sessions="record", require_session_join="on")
    return lambda: client.post(url, data).status_code


def _sts_answer(*args: Any, **kwargs: Any) -> ScopedCredentials:
    """What STS answers (the fake fleet has no STS)."""
    return ScopedCredentials(
        access_key_id="ASIAEXAMPLEEXAMPLE01",
        secret_access_key="secret",
        session_token="token",
        expiration=timezone.now() + timedelta(minutes=15),
        role_session_name="passport-r1-u1",
        regions=("eu-west-1",),
    )


def _issue(access_request: AccessRequest, world: World) -> aws_credentials.AwsCredentialsIssued:
    return services.access_request_issue_aws_credentials(access_request=access_request, user=world.requester)


def test_moderation_saved_while_sts_answers_refuses_the_credentials(
    world: World, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch, withdrawals: list[int]
) -> None:
    access_request = _direct_and_active(world)
    post = _admin_moderates(world)
    admin = Side(post)

    def sts_while_the_admin_saves(*args: Any, **kwargs: Any) -> ScopedCredentials:
        admin.start()
        assert admin.finish() == 302  # committed before STS answers
        return _sts_answer()

    monkeypatch.setattr(fleet, "assume_scoped", sts_while_the_admin_saves, raising=False)

    with pytest.raises(RequestRuleError) as refused:
        _issue(access_request, world)

    assert refused.value.code == "conflict"  # a 409, as the moderated refusal before STS
    assert "are moderated" in str(refused.value) and "a session started with AWS credentials" in str(refused.value)
    prod = AwsAccount.objects.get(pk=world.prod.pk)
    assert prod.require_session_join and prod.cli_sessions == AwsAccount.CliSessions.RECORD
    # Not handed out, not recorded: the credentials STS gave are dropped.
    assert AccessRequest.objects.get(pk=access_request.pk).aws_credentials_until is None
    assert not LogbookEntry.objects.filter(action="credentials.issued").exists()
    entry = LogbookEntry.objects.get(action="credentials.refused")
    assert (entry.actor, entry.request_id, entry.detail) == (
        world.requester,
        access_request.pk,
        {"reason": "moderated"},
    )
    assert entry.instance_ids.split() == [world.web.instance_id]
    assert set(withdrawals) == {world.prod.pk}  # sent once the save committed
    assert logbook_verify().intact


def test_moderation_saved_as_the_credentials_are_recorded_waits_for_them(
    world: World, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch, withdrawals: list[int]
) -> None:
    access_request = _direct_and_active(world)
    post = _admin_moderates(world)
    monkeypatch.setattr(fleet, "assume_scoped", _sts_answer, raising=False)
    # Held after STS answered and the account was asked again, before ``credentials.issued``.
    hold = Hold(aws_credentials.logbook_append)
    monkeypatch.setattr(aws_credentials, "logbook_append", hold)
    issuing = Side(lambda: _issue(access_request, world))
    issuing.start()
    hold.wait(issuing)

    admin = Side(post)
    admin.start()
    wait_for_a_lock_waiter()  # the admin's save waits for the account's row, held by the issue
    hold.release.set()

    issued = issuing.finish()
    assert admin.finish() == 302
    # Issued first, then the account moderated: the withdrawal sent after that save knows of them.
    assert issued.scoped.access_key_id == "ASIAEXAMPLEEXAMPLE01"
    assert AccessRequest.objects.get(pk=access_request.pk).aws_credentials_until == issued.scoped.expiration
    credentials = LogbookEntry.objects.get(action="credentials.issued")
    changed = LogbookEntry.objects.get(action="admin.changed", detail__model="accounts.awsaccount")
    assert credentials.pk < changed.pk
    assert set(withdrawals) == {world.prod.pk}  # sent once the save committed
    assert logbook_verify().intact
