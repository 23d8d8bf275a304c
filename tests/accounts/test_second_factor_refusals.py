"""A wrong second-factor code after the right password is on record (``auth.sign_in_refused``,
``wrong_code``), and so is a code refused by the limit on codes (``rate_limited``,
accounts.mfa_forms' override of allauth's 2FA form): the password is known to someone, so the
person is named. Written once per client address and reason, then counted, as a wrong password
is; never with the code typed. Through the real sign-in and 2FA pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from audit.models import LogbookEntry
from audit.refusals import logbook_refusals_flush
from tests.accounts.test_mfa import password_sign_in, totp
from tests.conftest import World

pytestmark = pytest.mark.django_db

WRONG_CODES = ("000001", "000002", "000003")


@pytest.fixture(autouse=True)
def production_limits(settings: Any) -> None:
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
    cache.clear()


def _alice_at_the_code_step(world: World, address: str = "198.51.100.7") -> tuple[Client, str]:
    secret = generate_totp_secret()
    TOTP.activate(world.requester, secret)
    client = Client(REMOTE_ADDR=address)
    assert password_sign_in(client, "alice") == "/accounts/2fa/authenticate/"
    return client, secret


def _refusals() -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action="auth.sign_in_refused").order_by("id"))


def _post_code(client: Client, code: str) -> Any:
    response = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    return response


def test_wrong_codes_after_the_right_password_are_on_record_naming_the_person(world: World) -> None:
    client, _ = _alice_at_the_code_step(world)
    for code in WRONG_CODES:
        _post_code(client, code)

    (entry,) = _refusals()
    assert entry.actor_label == "system"
    assert entry.detail["reason"] == "wrong_code" and entry.detail["method"] == "local"
    assert entry.detail["person"] == "alice" and entry.detail["source"] == "198.51.100.7"
    text = str(list(LogbookEntry.objects.values_list("action", "detail")))
    assert not any(code in text for code in WRONG_CODES)

    assert logbook_refusals_flush(now=timezone.now() + timedelta(hours=1)) == 1
    (summary,) = LogbookEntry.objects.filter(action="auth.sign_in_refused", detail__summary=True)
    assert summary.detail["total"] == 3
    assert summary.detail["counts"] == [{"source": "198.51.100.7", "reason": "wrong_code", "count": 3}]


def test_codes_refused_by_the_limit_are_on_record_and_the_right_code_is_refused_too(world: World) -> None:
    client, secret = _alice_at_the_code_step(world)
    for code in (*WRONG_CODES, "000004", "000005"):
        _post_code(client, code)
    # Past allauth's 5 in 5 minutes a code is refused unchecked, the right one too.
    refused = _post_code(client, totp(secret))
    assert "code" in refused.context["form"].errors
    _post_code(client, "000006")

    reasons = [entry.detail["reason"] for entry in _refusals()]
    assert reasons == ["wrong_code", "rate_limited"]
    limited = _refusals()[1]
    assert limited.detail["person"] == "alice" and limited.detail["source"] == "198.51.100.7"
    logbook_refusals_flush(now=timezone.now() + timedelta(hours=1))
    (summary,) = LogbookEntry.objects.filter(action="auth.sign_in_refused", detail__summary=True)
    assert {row["reason"]: row["count"] for row in summary.detail["counts"]} == {"wrong_code": 5, "rate_limited": 2}


def test_the_right_code_signs_in_with_no_refusal_on_record(world: World) -> None:
    client, secret = _alice_at_the_code_step(world)
    response = client.post("/accounts/2fa/authenticate/", {"code": totp(secret)})
    assert response.status_code == 302 and "_auth_user_id" in client.session
    assert _refusals() == []
    assert LogbookEntry.objects.filter(action="auth.signed_in", detail__mfa=True).count() == 1
