"""Refused sign-ins are on record without letting a flood grow the Logbook (audit.refusals): a wrong
local password, or a guess at one refused by the limit on guesses (``auth.sign_in_refused``), an
unknown, revoked or expired CLI bearer token (``cli.token_refused``) and a device code replayed or
exchanged for someone who may no longer have it (``cli.device_code_refused``). Keyed by the client's
address, or by the person when the token or code names one; never with the password, the token or
the device code."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import cli_services, cli_tokens
from accounts.authentication import hash_token
from accounts.models import ApiToken, User
from audit.models import LogbookEntry
from audit.refusals import OTHER_SOURCES, logbook_refusals_flush
from tests.conftest import World

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_refusal_cap(settings: Any) -> None:
    settings.PASSPORT_REFUSAL_SOURCES_PER_WINDOW = 3
    # allauth's own limit would stop asking the password backend after a few tries from one address.
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "1000/m/ip,1000/m/key"}


def _entries(action: str) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action=action).order_by("id"))


def _text_of_every_entry() -> str:
    return " ".join(str(row) for row in LogbookEntry.objects.values_list("action", "actor_label", "detail"))


def _sign_in(login: str, password: str, *, address: str = "198.51.100.7") -> None:
    client = Client(REMOTE_ADDR=address)
    response = client.post("/accounts/login/", {"login": login, "password": password})
    assert response.status_code == 200 and "_auth_user_id" not in client.session


def _bearer(raw: str, *, address: str = "198.51.100.7") -> int:
    client = APIClient(REMOTE_ADDR=address)
    return int(client.get("/api/requests/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code)


def test_a_wrong_password_is_on_record_once_then_counted(world: World) -> None:
    for attempt in range(6):
        _sign_in("alice", f"guess-{attempt}-secret")
    (entry,) = _entries("auth.sign_in_refused")
    assert entry.actor_label == "system"
    assert entry.detail["reason"] == "wrong_password" and entry.detail["method"] == "local"
    assert entry.detail["person"] == "alice" and entry.detail["source"] == "198.51.100.7"
    assert "guess-" not in _text_of_every_entry()

    assert logbook_refusals_flush(now=timezone.now() + timedelta(hours=1)) == 1
    (summary,) = LogbookEntry.objects.filter(action="auth.sign_in_refused", detail__summary=True)
    assert summary.detail["total"] == 6


def test_a_login_nobody_has_is_recorded_without_the_text_typed(world: World) -> None:
    _sign_in("hunter2-typed-as-a-name", "whatever")
    (entry,) = _entries("auth.sign_in_refused")
    assert entry.detail["reason"] == "unknown_login" and "person" not in entry.detail
    assert "hunter2" not in _text_of_every_entry()


def test_a_flood_of_wrong_passwords_from_many_addresses_makes_a_bounded_number_of_entries(
    world: World, time_machine: Any
) -> None:
    # All in one window: a flood that straddles its end is two windows, each with its own cap (on a
    # loaded machine 40 password checks can take long enough to cross one).
    time_machine.move_to(timezone.now(), tick=False)
    for number in range(40):
        _sign_in("alice", "wrong", address=f"203.0.113.{number + 1}")
    entries = _entries("auth.sign_in_refused")
    # The cap's named addresses, then one entry for everyone else past it.
    assert len(entries) == 3 + 1
    assert entries[-1].detail["source"] == OTHER_SOURCES


def _token(user: User, *, expires_in: timedelta = timedelta(hours=12)) -> tuple[ApiToken, str]:
    raw = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name="passport CLI laptop", token_hash=hash_token(raw), expires_at=timezone.now() + expires_in
    )
    return token, raw


def test_a_revoked_or_unknown_token_is_on_record_by_address_never_with_the_token(world: World) -> None:
    _, raw = _token(world.requester)
    assert _bearer(raw) == 200
    cli_tokens.api_tokens_revoke_for_user(
        user_id=world.requester.pk, actor=world.requester, reason=cli_tokens.RevokeReason.SIGNED_OUT
    )
    for _ in range(20):
        assert _bearer(raw) == 401
    made_up = secrets.token_urlsafe(32)
    assert _bearer(made_up) == 401
    (entry,) = _entries("cli.token_refused")
    assert entry.detail["reason"] == "unknown_token" and entry.detail["source"] == "198.51.100.7"
    text = _text_of_every_entry()
    assert raw not in text and hash_token(raw) not in text and made_up not in text


def test_an_expired_token_is_on_record_under_its_person(world: World) -> None:
    token, raw = _token(world.requester, expires_in=timedelta(seconds=-1))
    assert _bearer(raw) == 401
    assert _bearer(raw) == 401
    (entry,) = _entries("cli.token_refused")
    assert entry.actor_label == "alice"
    assert entry.detail["reason"] == "expired" and entry.detail["token"] == token.pk
    assert entry.detail["source"] == f"user:{world.requester.pk}" and entry.detail["address"] == "198.51.100.7"
    assert raw not in _text_of_every_entry()


def test_a_token_of_a_deactivated_person_is_on_record(world: World) -> None:
    # Deactivation revokes the person's tokens; one made after it (a restored backup, a script) is refused too.
    world.member.is_active = False
    world.member.save()
    _, raw = _token(world.member)
    assert _bearer(raw) == 401
    (entry,) = _entries("cli.token_refused")
    assert (entry.actor_label, entry.detail["reason"]) == ("erin", "person_inactive")


def _collected(user: User) -> cli_services.DeviceStart:
    start = cli_services.device_authorization_start(client_name="laptop")
    cli_services.device_authorization_confirm(user_code=start.user_code, user=user)
    return start


def test_a_replayed_device_code_is_on_record_never_with_the_code(world: World) -> None:
    start = _collected(world.requester)
    client = APIClient(REMOTE_ADDR="198.51.100.9")
    assert client.post("/api/cli/token/", {"device_code": start.device_code}, format="json").status_code == 200
    for _ in range(3):
        replay = client.post("/api/cli/token/", {"device_code": start.device_code}, format="json")
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    (entry,) = _entries("cli.device_code_refused")
    assert entry.actor_label == "alice"
    assert entry.detail["reason"] == "replayed" and entry.detail["client"] == "laptop"
    assert entry.detail["address"] == "198.51.100.9"
    text = _text_of_every_entry()
    assert start.device_code not in text and hash_token(start.device_code) not in text


def test_a_device_code_of_a_person_since_disabled_is_on_record(world: World) -> None:
    start = _collected(world.requester)
    # Deactivation voids the codes on their way (a save's, an update()'s); one written where no receiver
    # hears it (raw SQL, the plain base manager) meets the check here.
    User._base_manager.filter(pk=world.requester.pk).update(is_active=False)
    with pytest.raises(cli_services.DeviceFlowError):
        cli_services.device_token_exchange(device_code=start.device_code, source="198.51.100.9")
    (entry,) = _entries("cli.device_code_refused")
    assert (entry.actor_label, entry.detail["reason"]) == ("alice", "disabled")


def test_a_device_code_whose_session_ended_is_on_record(world: World) -> None:
    start = cli_services.device_authorization_start(client_name="laptop")
    cli_services.device_authorization_confirm(
        user_code=start.user_code, user=world.requester, session_ends_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(cli_services.DeviceFlowError):
        cli_services.device_token_exchange(device_code=start.device_code, source="198.51.100.9")
    (entry,) = _entries("cli.device_code_refused")
    assert (entry.actor_label, entry.detail["reason"]) == ("alice", "session_ended")


def test_a_code_still_waiting_is_no_refusal(world: World) -> None:
    start = cli_services.device_authorization_start(client_name="laptop")
    with pytest.raises(cli_services.DeviceFlowError):
        cli_services.device_token_exchange(device_code=start.device_code)
    assert _entries("cli.device_code_refused") == []


def test_guesses_refused_by_the_limit_are_still_counted(world: World, settings: Any) -> None:
    # Past allauth's limit a guess is refused before any password is checked: still on record.
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
    for attempt in range(15):
        _sign_in("alice", f"guess-{attempt}-secret")
    first, limited = _entries("auth.sign_in_refused")
    assert first.detail["reason"] == "wrong_password"
    assert limited.detail["reason"] == "rate_limited" and limited.detail["person"] == "alice"
    assert limited.detail["source"] == "198.51.100.7" and limited.actor_label == "system"
    assert "guess-" not in _text_of_every_entry()

    assert logbook_refusals_flush(now=timezone.now() + timedelta(hours=1)) == 1
    (summary,) = LogbookEntry.objects.filter(action="auth.sign_in_refused", detail__summary=True)
    assert summary.detail["total"] == 15
    assert {row["reason"]: row["count"] for row in summary.detail["counts"]} == {
        "wrong_password": 5,
        "rate_limited": 10,
    }


def test_a_flood_refused_by_the_limit_from_many_addresses_makes_a_bounded_number_of_entries(
    world: World, settings: Any, time_machine: Any
) -> None:
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
    time_machine.move_to(timezone.now(), tick=False)
    for number in range(40):
        _sign_in("hunter2-typed-as-a-name", "wrong", address=f"203.0.113.{number + 1}")
    entries = _entries("auth.sign_in_refused")
    # The cap's named (address, reason) pairs, then one entry per reason for everyone else past it:
    # the five guesses checked (``unknown_login``), then those refused by the per-person limit.
    assert len(entries) == 3 + 2
    assert [(entry.detail["source"], entry.detail["reason"]) for entry in entries[3:]] == [
        (OTHER_SOURCES, "unknown_login"),
        (OTHER_SOURCES, "rate_limited"),
    ]
    assert all("person" not in entry.detail for entry in entries)
    assert "hunter2" not in _text_of_every_entry()
