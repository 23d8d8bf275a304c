"""A request ended or shortened while a credential for it is being issued.

The checks before handing out a login (a certificate, the Windows password) or AWS credentials read
the grant and its request as the view loaded them; the IAM gate (a network call), or STS, comes
after. An ending, a revocation or a policy's shortening committing in that window must not be
missed: what is handed out is weighed again on the request's row as it is now, locked, and never
outlives the request's current end. The other side runs where the network call is, after it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from accounts.models import ApprovalPolicy, AwsAccount
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import ScopedCredentials
from requests_app import services
from requests_app.models import AccessRequest, Grant, RequestStatus
from requests_app.services.credentials import logins
from sshca.models import IssuedCertificate
from tests.conftest import World
from tests.fakes.fleet import FakeFleet
from tests.requests_app.conftest import request_actions
from tests.requests_app.test_provisioning import active_request, provisioning_request

pytestmark = pytest.mark.usefixtures("service_settings", "queued", "fleet")

T0 = datetime(2030, 3, 4, 13, 0, tzinfo=UTC)
CREDENTIALS_REFUSED = "Credentials are issued only while the request is active and the user is ready."
PASSWORD_REFUSED = "The password is shown only while the request is active and the user is ready."


@pytest.fixture
def frozen(time_machine: Any) -> Any:
    time_machine.move_to(T0, tick=False)
    return time_machine


def _loaded(grant_id: int) -> Grant:
    """What the API view does (``apis.common._grant``): the grant and its request read once, unlocked."""
    return Grant.objects.select_related("request__account", "request__requester", "instance").get(pk=grant_id)


def _during_the_iam_check(monkeypatch: pytest.MonkeyPatch, other_side: Any) -> None:
    """``other_side`` commits once the IAM gate answered, before anything is handed out."""
    real = logins.iam_check_grant

    def iam_check_grant(**kw: Any) -> None:
        real(**kw)
        other_side()

    monkeypatch.setattr(logins, "iam_check_grant", iam_check_grant)


def _completed_by(world: World, access_request: AccessRequest) -> Any:
    """The requester, in another tab, completes the request."""
    return lambda: services.access_request_complete(
        access_request=AccessRequest.objects.get(pk=access_request.pk), actor=world.requester
    )


def _limit_saved(world: World, limit: timedelta) -> Any:
    """An admin saves the account's policy with a lower ``deny_over_duration``."""

    def save() -> None:
        policy, _ = ApprovalPolicy.objects.get_or_create(account=world.prod)
        policy.deny_over_duration = limit
        policy.save()

    return save


def _active_for_eight_hours(world: World) -> tuple[AccessRequest, int]:
    access_request, (grant_id,) = provisioning_request(world, [world.web], duration=timedelta(hours=8), ticket="CHG-2")
    services.grant_provision(grant_id=grant_id)
    access_request = AccessRequest.objects.select_related("account").get(pk=access_request.pk)
    assert access_request.expires_at == T0 + timedelta(hours=8)
    return access_request, grant_id


def _public_key() -> str:
    return (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def test_no_windows_password_is_shown_once_the_request_ended_meanwhile(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request, (grant_id,) = active_request(world, [world.windows])
    grant = _loaded(grant_id)
    assert grant.password_sealed
    _during_the_iam_check(monkeypatch, _completed_by(world, access_request))

    with pytest.raises(RequestRuleError, match=PASSWORD_REFUSED) as refused:
        services.grant_reveal_password(grant=grant, user=world.requester)

    assert refused.value.code == "conflict"
    assert AccessRequest.objects.get(pk=access_request.pk).status != RequestStatus.ACTIVE
    assert Grant.objects.get(pk=grant_id).password_sealed is None  # wiped by the ending
    assert "grant.password_viewed" not in request_actions(access_request.pk)


def test_the_windows_password_is_shown_and_logged_while_the_request_stays_active(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request, (grant_id,) = active_request(world, [world.windows])
    _during_the_iam_check(monkeypatch, lambda: None)

    assert services.grant_reveal_password(grant=_loaded(grant_id), user=world.requester)

    viewed = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.password_viewed")
    assert viewed.actor == world.requester


def test_no_certificate_is_signed_once_the_request_ended_meanwhile(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request, (grant_id,) = active_request(world, [world.web])
    grant = _loaded(grant_id)
    _during_the_iam_check(monkeypatch, _completed_by(world, access_request))

    with pytest.raises(RequestRuleError, match=CREDENTIALS_REFUSED) as refused:
        services.grant_issue_certificate(grant=grant, user=world.requester, public_key=_public_key())

    assert refused.value.code == "conflict"
    assert not IssuedCertificate.objects.filter(request_id=access_request.pk).exists()
    assert "certificate.issued" not in request_actions(access_request.pk)


def test_a_certificate_signed_across_a_shortening_ends_at_the_new_end(
    world: World, frozen: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    access_request, grant_id = _active_for_eight_hours(world)
    frozen.move_to(T0 + timedelta(minutes=20), tick=False)
    grant = _loaded(grant_id)
    _during_the_iam_check(monkeypatch, _limit_saved(world, timedelta(hours=1)))

    services.grant_issue_certificate(grant=grant, user=world.requester, public_key=_public_key())

    assert AccessRequest.objects.get(pk=access_request.pk).expires_at == T0 + timedelta(hours=1)
    issued = IssuedCertificate.objects.get(request_id=access_request.pk)
    assert issued.valid_before == T0 + timedelta(hours=1), issued.valid_before


def test_aws_credentials_issued_across_a_shortening_do_not_outlive_the_new_end(
    world: World, frozen: Any, fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STS answers with credentials cut off at the end as read before the call; a shortening committed
    during the call brings the end before their expiry: they are refused, not handed out."""
    AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    access_request, _ = _active_for_eight_hours(world)
    frozen.move_to(T0 + timedelta(minutes=50), tick=False)
    save = _limit_saved(world, timedelta(hours=1))

    def sts_while_the_admin_saves(*, instances: Any, role_session_name: str, not_after: datetime) -> ScopedCredentials:
        save()
        return ScopedCredentials(
            access_key_id="ASIAEXAMPLEEXAMPLE01",
            secret_access_key="secret",
            session_token="token",
            # As the fleet reports them: STS's 15 minutes, or the policy's cut-off if sooner.
            expiration=min(timezone.now() + timedelta(minutes=15), not_after).replace(microsecond=0),
            role_session_name=role_session_name,
            regions=tuple(sorted({region for region, _ in instances})),
        )

    monkeypatch.setattr(fleet, "assume_scoped", sts_while_the_admin_saves, raising=False)

    with pytest.raises(RequestRuleError, match="its end was brought forward") as refused:
        services.access_request_issue_aws_credentials(access_request=access_request, user=world.requester)

    assert refused.value.code == "conflict"
    access_request = AccessRequest.objects.get(pk=access_request.pk)
    assert access_request.expires_at == T0 + timedelta(hours=1)
    assert access_request.aws_credentials_until is None
    assert "credentials.issued" not in request_actions(access_request.pk)
