"""A live request whose instance's region was taken off its account is not extended: no more time on
a host Passport no longer manages, and no Run Command (``sync_grant_expiry``) queued there. The page
and the API say why; the refusal is on record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import selectors, services
from requests_app.models import AccessRequest
from tests.conftest import World
from tests.fakes.fleet import FakeFleet
from tests.requests_app.test_account_expiry import active_request
from tests.requests_app.test_region_taken_off import _take_us_east_1_off

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]


def test_a_request_in_a_region_taken_off_is_not_extended(world: World, fleet: FakeFleet, queued: Any) -> None:
    access_request, _ = active_request(world, world.web, hours=1)
    _take_us_east_1_off(world, fleet)
    access_request = AccessRequest.objects.select_related("account").get(pk=access_request.pk)
    before = access_request.expires_at
    queued.clear()

    check = selectors.access_request_extend_check(access_request=access_request, user=world.requester)
    assert not check and "us-east-1" in check.reason and "cannot be extended" in check.reason
    with pytest.raises(RequestRuleError, match="cannot be extended"):
        services.access_request_extend(access_request=access_request, actor=world.requester, by=timedelta(hours=2))

    access_request.refresh_from_db()
    assert access_request.expires_at == before
    assert [name for name, _ in queued if name == "sync_grant_expiry"] == []
    assert LogbookEntry.objects.filter(request_id=access_request.pk, action="request.extend_denied").exists()
