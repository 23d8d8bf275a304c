"""Anonymous SAML sign-in starts cannot fill the session table: each start without a session
writes one (it remembers the AuthnRequest's id), so such starts are limited per client address,
and expired sessions, signed in or not, go in an hourly sweep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from audit.models import LogbookEntry
from tests.accounts.test_saml import CAROL, CUSTOMER, idps, sign_in, signed_in_user  # noqa: F401  (idps: autouse)
from tests.conftest import World
from workers import tasks

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # just after a minute's window starts
ADDRESS = "203.0.113.9"


@pytest.fixture(autouse=True)
def limits(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_SAML_STARTS_PER_MINUTE = 20
    settings.PASSPORT_TRUSTED_PROXY_COUNT = 0
    time_machine.move_to(T0, tick=False)


def start_without_cookie(address: str = ADDRESS, **headers: str) -> Any:
    """A client that keeps no cookie: every start would be a new anonymous session."""
    return Client(REMOTE_ADDR=address).get("/accounts/saml/customer/login/", **headers)


def test_anonymous_sign_in_starts_are_limited_per_client_address() -> None:
    before = Session.objects.count()
    for n in range(20):
        # A made-up X-Forwarded-For does not make a new client.
        assert start_without_cookie(HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code == 302
    assert Session.objects.count() - before == 20
    for _ in range(180):
        refused = start_without_cookie()
        assert refused.status_code == 429
    assert Session.objects.count() - before == 20, "a refused start wrote a session"
    assert int(refused["Retry-After"]) == 60 - 5 + 1
    text = refused.content.decode()
    assert "Too many sign-ins were started from this address: wait 56 seconds and try again." in text
    # Refusals reach the Logbook once per window and address, then only as a count.
    entries = LogbookEntry.objects.filter(action="auth.saml_refused", detail__reason="too_many_starts")
    assert entries.count() == 1
    assert entries.get().detail["source"] == ADDRESS
    # Another client is not held back, nor this one in the next minute.
    assert start_without_cookie("203.0.113.10").status_code == 302
    assert Session.objects.count() - before == 21


def test_the_next_minute_lets_the_address_start_again(time_machine: Any) -> None:
    for _ in range(20):
        assert start_without_cookie().status_code == 302
    assert start_without_cookie().status_code == 429
    time_machine.move_to(T0 + timedelta(seconds=60), tick=False)
    assert start_without_cookie().status_code == 302


def test_a_browser_that_keeps_its_session_is_not_counted_again(world: World) -> None:
    """Starting over in the same browser writes its own session again, no new row: never refused."""
    client = Client(REMOTE_ADDR=ADDRESS)
    for _ in range(19):
        assert start_without_cookie().status_code == 302
    for _ in range(30):
        assert client.get("/accounts/saml/customer/login/").status_code == 302
    assert start_without_cookie().status_code == 429
    # That browser signs in as ever, answering its latest start.
    response, _ = sign_in(client, "customer", CUSTOMER, CAROL)
    assert response.status_code == 302 and response["Location"] == "/requests/"
    user = signed_in_user(client)
    assert user is not None and user.email == CAROL.email


def test_expired_sessions_go_in_the_hourly_sweep(world: World) -> None:
    assert start_without_cookie().status_code == 302
    signed_in = Client(REMOTE_ADDR=ADDRESS)
    signed_in.force_login(world.requester)
    live_key = signed_in.session.session_key
    assert Session.objects.count() == 2
    Session.objects.exclude(session_key=live_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    tasks.purge_expired_sessions()
    assert list(Session.objects.values_list("session_key", flat=True)) == [live_key]
    # A signed-in session past its expiry goes too.
    Session.objects.update(expire_date=timezone.now() - timedelta(days=30))
    tasks.purge_expired_sessions()
    assert not Session.objects.exists()
    entry = django_settings.CELERY_BEAT_SCHEDULE["purge-expired-sessions"]
    assert entry["task"] == "workers.tasks.purge_expired_sessions"
    assert entry["schedule"].run_every == timedelta(hours=1)
