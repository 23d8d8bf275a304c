"""A local person's own security changes are on record, whatever page made them: a new password
(``auth.password_changed``: by the person, by a reset link, by a script) and a second factor
added, removed or its recovery codes made anew (``auth.mfa_added``, ``auth.mfa_removed``,
``auth.recovery_codes_regenerated``). Each entry is written in the transaction of the change, and
never holds a secret. The admin's password form is on record once, as the admin's change."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from time_machine import TimeMachineFixture

from audit.models import LogbookEntry
from tests.accounts.test_mfa import START, alice_with_her_password, turn_totp_on
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "A-much-better-pw-2026!"
SECURITY_ACTIONS = (
    "auth.password_changed",
    "auth.mfa_added",
    "auth.mfa_removed",
    "auth.recovery_codes_regenerated",
)


def _recorded(*, since: int = 0) -> list[tuple[str, str, dict[str, Any]]]:
    entries = LogbookEntry.objects.filter(action__in=SECURITY_ACTIONS, id__gt=since).order_by("id")
    return [(entry.action, entry.actor_label, entry.detail) for entry in entries]


def _last_id() -> int:
    return LogbookEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _text_of_every_entry() -> str:
    return " ".join(str(row) for row in LogbookEntry.objects.values_list("action", "actor_label", "detail"))


def test_changing_ones_own_password_is_on_record(world: World) -> None:
    client = alice_with_her_password()
    changed = client.post(
        "/accounts/password/change/", {"oldpassword": "pw-alice", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert changed.status_code == 302
    world.requester.refresh_from_db()
    assert world.requester.check_password(NEW_PASSWORD)
    assert _recorded() == [("auth.password_changed", "alice", {"how": "self", "usable": True})]
    text = _text_of_every_entry()
    assert NEW_PASSWORD not in text and "pw-alice" not in text and world.requester.password not in text


def test_a_password_reset_by_key_is_on_record(world: World) -> None:
    assert Client().post("/accounts/password/reset/", {"email": "alice@example.test"}).status_code == 302
    (message,) = mail.outbox
    (link,) = re.findall(r"https?://\S*/accounts/password/reset/key/\S+", message.body)
    browser = Client()
    opened = browser.get(re.sub(r"^https?://[^/]+", "", link), follow=True)
    form_url = opened.redirect_chain[-1][0] if opened.redirect_chain else re.sub(r"^https?://[^/]+", "", link)
    done = browser.post(form_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert done.status_code == 302, done.content.decode()[:2000]
    world.requester.refresh_from_db()
    assert world.requester.check_password(NEW_PASSWORD)
    assert _recorded() == [("auth.password_changed", "alice", {"how": "reset", "usable": True})]
    assert NEW_PASSWORD not in _text_of_every_entry()


def test_a_password_set_by_a_script_is_on_record_without_an_actor(world: World) -> None:
    world.requester.set_password(NEW_PASSWORD)
    world.requester.save()
    assert _recorded() == [("auth.password_changed", "system", {"how": "other", "usable": True, "user": "alice"})]


def test_the_record_of_a_password_change_goes_with_its_transaction(world: World) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        world.requester.set_password(NEW_PASSWORD)
        world.requester.save()
        assert [action for action, _, _ in _recorded()] == ["auth.password_changed"]
        raise RuntimeError("the change is rolled back")
    assert _recorded() == []


def test_the_admins_password_form_is_recorded_once_as_the_admins_change(world: World) -> None:
    admin = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(admin)
    mark = _last_id()
    response = client.post(
        f"/admin/accounts/user/{world.requester.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    # The admin trail's entry names the admin and the person; no second entry says it again.
    (change,) = LogbookEntry.objects.filter(id__gt=mark, action="admin.changed")
    assert change.actor_label == "root" and "password" in str(change.detail)
    assert _recorded(since=mark) == []
    assert NEW_PASSWORD not in _text_of_every_entry()


def test_turning_totp_on_new_recovery_codes_and_totp_off_are_on_record(
    world: World, time_machine: TimeMachineFixture
) -> None:
    time_machine.move_to(START, tick=False)
    web = alice_with_her_password()
    secret = turn_totp_on(web)
    assert _recorded() == [
        ("auth.mfa_added", "alice", {"type": "totp"}),
        ("auth.mfa_added", "alice", {"type": "recovery_codes"}),
    ]

    mark = _last_id()
    assert web.post("/accounts/2fa/recovery-codes/generate/").status_code == 302
    assert _recorded(since=mark) == [("auth.recovery_codes_regenerated", "alice", {"type": "recovery_codes"})]

    mark = _last_id()
    assert web.post("/accounts/2fa/totp/deactivate/").status_code == 302
    assert not Authenticator.objects.filter(user=world.requester).exists()
    assert _recorded(since=mark) == [
        ("auth.mfa_removed", "alice", {"type": "totp"}),
        ("auth.mfa_removed", "alice", {"type": "recovery_codes"}),
    ]
    # Neither the TOTP secret nor a recovery code is in any entry.
    text = _text_of_every_entry()
    assert secret not in text


def test_an_authenticator_removed_by_a_script_names_whose_it_was(world: World) -> None:
    authenticator = Authenticator.objects.create(
        user=world.requester, type=Authenticator.Type.RECOVERY_CODES, data={"seed": "00" * 20}
    )
    authenticator.delete()
    assert _recorded() == [
        ("auth.mfa_added", "system", {"type": "recovery_codes", "user": "alice"}),
        ("auth.mfa_removed", "system", {"type": "recovery_codes", "user": "alice"}),
    ]


def _told(address: str) -> list[str]:
    return [m.subject for m in mail.outbox if m.to == [address]]


@pytest.fixture
def internal_host(settings: Any) -> None:
    settings.PASSPORT_BASE_URL = "https://passport.example.test/"
    settings.ALLOWED_HOSTS = ["passport.example.test", "passport-internal.example.test"]


@pytest.mark.usefixtures("internal_host")
def test_a_site_admin_is_told_by_mail_their_password_changed() -> None:
    root = make_user("root", is_superuser=True, is_staff=True)
    client = Client(HTTP_HOST="passport-internal.example.test")
    client.force_login(root)
    changed = client.post(
        "/accounts/password/change/", {"oldpassword": "pw-root", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert changed.status_code == 302
    root.refresh_from_db()
    assert root.check_password(NEW_PASSWORD)
    (message,) = mail.outbox
    assert message.to == ["root@example.test"] and message.subject.startswith("[Passport] ")
    # Named by the portal's public URL, not the Host header the change came through; no secret in it.
    assert "https://passport.example.test" in message.body
    assert "passport-internal" not in message.subject + message.body
    assert NEW_PASSWORD not in message.body and "pw-root" not in message.body


def test_a_password_reset_by_key_is_told_by_mail(world: World) -> None:
    test_a_password_reset_by_key_is_on_record(world)
    # The reset link, then word that the password was reset.
    assert len(_told("alice@example.test")) == 2


@pytest.fixture
def committed(transactional_db: None) -> Iterator[None]:
    """Changes committed as in production: allauth mails some of these on commit, within the request."""
    yield
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")


@pytest.mark.usefixtures("committed")
def test_turning_totp_on_and_off_is_told_by_mail(world: World, time_machine: TimeMachineFixture) -> None:
    test_turning_totp_on_new_recovery_codes_and_totp_off_are_on_record(world, time_machine)
    subjects = _told("alice@example.test")
    # Turned on, recovery codes made anew, turned off: each is told, under the portal's name.
    assert len(subjects) == 3 and all(s.startswith("[Passport] ") for s in subjects), subjects
