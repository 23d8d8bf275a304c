"""A signed-in person refused the use of someone else's access (a certificate, a Windows password in
the API or the page, a session) is on record: ``credentials.use_denied`` with what for, which grant
and why. The same refusal again (a script retrying) is counted, not written again (audit.refusals)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client
from rest_framework.test import APIClient

from audit.models import LogbookEntry, RefusalTally
from core.errors import NotAllowed
from requests_app import services
from requests_app.models import AccessRequest, Grant, Instance
from ssmchannel.documents import SSH_DOCUMENT
from tests.conftest import World
from tests.factories import make_active_request

pytestmark = pytest.mark.django_db

OTHERS_ACCESS = "Only the person who asked for this access can use it."


@pytest.fixture(autouse=True)
def iam_check_off(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = False


def _public_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _denied() -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action="credentials.use_denied").order_by("id"))


def _grant(access_request: AccessRequest, instance: Instance) -> Grant:
    return access_request.grants.select_related("instance", "request__account").get(instance=instance)


def test_a_certificate_for_another_persons_grant_is_refused_on_record_once_per_window(world: World) -> None:
    access_request = make_active_request(world.requester, world.prod, world.web)
    grant = _grant(access_request, world.web)
    url = f"/api/requests/{access_request.pk}/grants/{world.web.instance_id}/certificate/"
    carol = _api(world.approver)  # an approver of the account: she sees the request, may not use it

    for _ in range(5):
        assert carol.post(url, {"public_key": _public_key()}).status_code == 403

    (entry,) = _denied()
    assert entry.actor_label == "carol"
    assert entry.request_id == access_request.pk and entry.account_id == world.prod.account_id
    assert entry.instance_ids.split() == [world.web.instance_id]
    assert entry.detail["purpose"] == "certificate"
    assert entry.detail["grant"] == grant.pk
    assert entry.detail["reason"] == OTHERS_ACCESS
    # The four repeats are a count under the same key, summarised when the window closes.
    (tally,) = RefusalTally.objects.filter(action="credentials.use_denied")
    assert tally.count == 5 and tally.source == f"user:{world.approver.pk}"


def test_a_windows_password_for_another_persons_grant_is_refused_on_record(world: World) -> None:
    access_request = make_active_request(world.requester, world.prod, world.windows)
    grant = _grant(access_request, world.windows)

    page = Client()
    page.force_login(world.approver)
    shown = page.post(f"/requests/{access_request.pk}/grants/{grant.pk}/password/")
    assert shown.status_code in (403, 409) and b"Only the person who asked" in shown.content
    api = _api(world.approver).post(f"/api/requests/{access_request.pk}/grants/{world.windows.instance_id}/password/")
    assert api.status_code == 403

    # The page's refusal is written; the API's, the same one again, is counted with it.
    (entry,) = _denied()
    assert (entry.actor_label, entry.detail["purpose"], entry.detail["grant"]) == ("carol", "password", grant.pk)
    assert RefusalTally.objects.get(action="credentials.use_denied").count == 2
    assert not LogbookEntry.objects.filter(action="grant.password_viewed").exists()


def test_a_session_on_another_persons_grant_is_refused_on_record(world: World) -> None:
    access_request = make_active_request(world.requester, world.prod, world.web)
    grant = _grant(access_request, world.web)
    with pytest.raises(NotAllowed):
        services.grant_start_session(grant=grant, user=world.member, document=SSH_DOCUMENT, port=22, via="cli")
    (entry,) = _denied()
    assert (entry.actor_label, entry.detail["purpose"], entry.detail["grant"]) == ("erin", "session", grant.pk)


def test_the_requester_using_their_own_access_writes_no_refusal(world: World) -> None:
    access_request = make_active_request(world.requester, world.prod, world.web)
    response = _api(world.requester).post(
        f"/api/requests/{access_request.pk}/grants/{world.web.instance_id}/certificate/",
        {"public_key": _public_key()},
    )
    assert response.status_code == 200, response.content
    assert _denied() == []
