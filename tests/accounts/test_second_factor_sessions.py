"""A change of a person's second factor (TOTP on or off, recovery codes made anew, one deleted in the
admin or by a script) signs out every other session of theirs and keeps the one that made it
(accounts.session_stamps), through the real allauth pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from django.test import Client
from django.utils.crypto import salted_hmac
from time_machine import TimeMachineFixture

from accounts.models import User
from accounts.session_stamps import security_stamp_renew
from audit.models import LogbookEntry
from tests.accounts.test_mfa import START, alice_with_her_password, password_sign_in, totp, turn_totp_on
from tests.accounts.test_saml import CAROL, CUSTOMER, idp_entry, sign_in
from tests.conftest import World

pytestmark = pytest.mark.django_db


def _signed_in(client: Client) -> bool:
    page = client.get("/requests/")
    if page.status_code == 302:
        assert page["Location"].startswith("/accounts/login/")
        return False
    assert page.status_code == 200
    return True


def _alice_turns_totp_on() -> tuple[Client, str]:
    """Alice signed in with her password in a browser of her own, where she turns TOTP on: that
    browser, and the TOTP secret."""
    alice = alice_with_her_password()
    return alice, turn_totp_on(alice)


def _factor_types(action: str, person: User) -> list[str]:
    """The types of second factor the Logbook's ``action`` entries by ``person`` name, sorted."""
    return sorted(entry.detail["type"] for entry in LogbookEntry.objects.filter(action=action, actor=person))


def _totp_sign_in(client: Client, secret: str) -> None:
    assert password_sign_in(client, "alice") == "/accounts/2fa/authenticate/"
    assert client.post("/accounts/2fa/authenticate/", {"code": totp(secret)}).status_code == 302


def test_turning_totp_on_signs_out_the_sessions_signed_in_with_the_password_alone(
    world: World, time_machine: TimeMachineFixture
) -> None:
    # Someone holding Alice's password signed in before she turned TOTP on, in another browser.
    time_machine.move_to(START, tick=False)
    intruder = alice_with_her_password()
    assert _signed_in(intruder)

    alice, _ = _alice_turns_totp_on()

    time_machine.move_to(START + timedelta(seconds=30), tick=False)
    assert not _signed_in(intruder)
    assert _signed_in(alice), "the session that turned TOTP on stays signed in"
    # On record as before: the factor added, by Alice.
    assert _factor_types("auth.mfa_added", world.requester) == ["recovery_codes", "totp"]


def test_a_session_from_before_totp_cannot_turn_it_off_with_the_password_alone(
    world: World, time_machine: TimeMachineFixture
) -> None:
    time_machine.move_to(START, tick=False)
    intruder = alice_with_her_password()
    _alice_turns_totp_on()

    time_machine.move_to(START + timedelta(minutes=20), tick=False)
    asked = intruder.get("/accounts/2fa/totp/deactivate/")
    assert asked.status_code == 302 and asked["Location"].startswith("/accounts/login/")
    intruder.post("/accounts/reauthenticate/", {"password": "pw-alice"})
    intruder.post("/accounts/2fa/totp/deactivate/")
    assert Authenticator.objects.filter(user=world.requester, type=Authenticator.Type.TOTP).exists()
    assert not LogbookEntry.objects.filter(action="auth.mfa_removed").exists()


def test_turning_totp_off_or_new_recovery_codes_sign_out_the_other_sessions(
    world: World, time_machine: TimeMachineFixture
) -> None:
    time_machine.move_to(START, tick=False)
    alice, secret = _alice_turns_totp_on()

    time_machine.move_to(START + timedelta(minutes=1), tick=False)
    laptop = Client()
    _totp_sign_in(laptop, secret)
    assert _signed_in(laptop)
    assert alice.post("/accounts/2fa/recovery-codes/generate/").status_code == 302
    assert not _signed_in(laptop)
    assert _signed_in(alice)
    assert LogbookEntry.objects.filter(action="auth.recovery_codes_regenerated", actor=world.requester).exists()

    time_machine.move_to(START + timedelta(minutes=2), tick=False)
    phone = Client()
    _totp_sign_in(phone, secret)
    assert alice.post("/accounts/2fa/totp/deactivate/").status_code == 302
    assert not _signed_in(phone)
    assert _signed_in(alice)
    assert _factor_types("auth.mfa_removed", world.requester) == ["recovery_codes", "totp"]


def test_a_second_factor_deleted_by_someone_else_signs_out_every_session_of_the_person(
    world: World, time_machine: TimeMachineFixture
) -> None:
    time_machine.move_to(START, tick=False)
    alice, _ = _alice_turns_totp_on()
    assert _signed_in(alice)

    Authenticator.objects.filter(user=world.requester, type=Authenticator.Type.TOTP).delete()  # a script

    assert not _signed_in(alice)


def _djangos_session_hash(person: User) -> str:
    return salted_hmac(
        "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash", person.password, algorithm="sha256"
    ).hexdigest()


def test_a_person_never_changed_keeps_djangos_session_hash(world: World) -> None:
    # Sessions signed in before the stamp existed stay signed in after the upgrade.
    person = User.objects.get(pk=world.requester.pk)
    assert person.security_stamp == ""
    assert person.get_session_auth_hash() == _djangos_session_hash(person)
    security_stamp_renew(user_id=person.pk)
    person.refresh_from_db()
    assert len(person.security_stamp) == 32
    assert person.get_session_auth_hash() != _djangos_session_hash(person)


def test_saml_sign_ins_are_unaffected(world: World, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", CUSTOMER, "customer")]
    before = Client()
    response, _ = sign_in(before, "customer", CUSTOMER, CAROL)
    assert response.status_code == 302 and response["Location"] == "/requests/"
    assert _signed_in(before)
    carol = User.objects.get(email="carol@customer.test")

    # Whatever renews the stamp ends the sessions from before it; a new SAML sign-in stands.
    security_stamp_renew(user_id=carol.pk)
    assert not _signed_in(before)
    after = Client()
    response, _ = sign_in(after, "customer", CUSTOMER, CAROL)
    assert response.status_code == 302 and response["Location"] == "/requests/"
    assert _signed_in(after)


def test_turning_totp_on_keeps_the_session_key_its_open_terminals_were_opened_under(
    world: World, time_machine: TimeMachineFixture
) -> None:
    """A terminal holds the session key it was opened under (terminal.consumers) and is closed once
    that key no longer names a signed-in session: the acting session keeps its key, so turning TOTP
    on in one tab does not close the terminal open in the next."""
    from terminal.services.closing import terminal_session_signed_in

    time_machine.move_to(START, tick=False)
    alice = alice_with_her_password()
    opened_under = alice.session.session_key
    assert terminal_session_signed_in(session_key=opened_under, user_id=world.requester.pk)

    turn_totp_on(alice)

    assert alice.session.session_key == opened_under
    assert terminal_session_signed_in(session_key=opened_under, user_id=world.requester.pk)
    assert _signed_in(alice)
