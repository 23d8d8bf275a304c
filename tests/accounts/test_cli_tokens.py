"""The CLI's bearer tokens can be revoked: by the person on their "CLI sign-ins" page, by a site
admin in the admin, and by themselves when the person's password or second factor changes or an
admin deactivates them. Every revocation is in the Logbook."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from asgiref.sync import async_to_sync
from django.contrib.auth.hashers import make_password
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from time_machine import TimeMachineFixture

from accounts import cli_services
from accounts.authentication import hash_token
from accounts.models import ApiToken, DeviceAuthorization, User
from audit.models import LogbookEntry
from tests.accounts.test_mfa import START, password_sign_in, totp
from tests.audit.admin_forms import form_data, only_entry, post_ok, superuser_client
from tests.conftest import World
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def issue(user: User, *, name: str = "passport CLI laptop", expires_in: timedelta = timedelta(hours=12)) -> str:
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, name=name, token_hash=hash_token(raw), expires_at=timezone.now() + expires_in)
    return raw


def api_status(raw: str) -> int:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return int(api.get("/api/requests/").status_code)


def revocations(user: User) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action="cli.token_revoked", detail__user=user.username).order_by("id"))


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- revoked by what happens to the person -----------------------------------------------------


def test_changing_the_password_revokes_every_token(world: World) -> None:
    """The lost laptop: the person changes their password and signs out; the old token is dead."""
    alice = world.requester
    laptop, desktop = issue(alice), issue(alice, name="passport CLI desktop")
    others = issue(world.member)
    assert api_status(laptop) == 200

    web = Client()
    password_sign_in(web, "alice")
    changed = web.post(
        "/accounts/password/change/",
        {"oldpassword": "pw-alice", "password1": "N3w-passw0rd-long", "password2": "N3w-passw0rd-long"},
    )
    assert changed.status_code == 302
    web.post("/accounts/logout/")

    assert api_status(laptop) == 401 and api_status(desktop) == 401
    assert api_status(others) == 200  # someone else's sign-ins are untouched
    entries = revocations(alice)
    assert {entry.detail["name"] for entry in entries} == {"passport CLI laptop", "passport CLI desktop"}
    assert all(entry.detail["reason"] == "password_changed" for entry in entries)
    assert all(entry.actor_label == "system" for entry in entries)
    assert not any(hash_token(laptop) in str(entry.detail) for entry in entries)


def test_a_password_set_by_an_admin_or_a_reset_revokes_them_too(world: World) -> None:
    """Whatever path sets a new password (the admin's form, a reset link, manage.py): set_password."""
    raw = issue(world.requester)
    admin = make_user("root", is_superuser=True, is_staff=True)
    response = signed_in(admin).post(
        f"/admin/accounts/user/{world.requester.pk}/password/",
        {"password1": "An0ther-long-pass", "password2": "An0ther-long-pass", "usable_password": "true"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert api_status(raw) == 401
    assert [entry.detail["reason"] for entry in revocations(world.requester)] == ["password_changed"]


def test_disabling_password_sign_in_in_the_admin_revokes_them_too(world: World) -> None:
    """The admin's "Disable password-based authentication" stores an unusable password: the old one
    is gone, a change like any other, and the sign-in on its way dies as well."""
    raw = issue(world.requester)
    intruder = _confirmed_not_collected(world.requester, client_name="intruder")
    admin = make_user("root", is_superuser=True, is_staff=True)
    response = signed_in(admin).post(
        f"/admin/accounts/user/{world.requester.pk}/password/",
        {"usable_password": "false", "unset-password": "Disable password-based authentication"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    world.requester.refresh_from_db()
    assert not world.requester.has_usable_password()
    assert api_status(raw) == 401
    assert [entry.detail["reason"] for entry in revocations(world.requester)] == ["password_changed"]
    voided = LogbookEntry.objects.get(action="cli.device_codes_voided")
    assert voided.detail == {"user": "alice", "count": 1, "reason": "password_changed"}
    with pytest.raises(cli_services.DeviceFlowError):
        cli_services.device_token_exchange(device_code=intruder.device_code)


def test_a_password_hash_written_without_set_password_counts_as_a_change(world: World) -> None:
    raw = issue(world.requester)
    world.requester.password = make_password("written-by-a-script-7!")
    world.requester.save(update_fields=["password"])
    assert api_status(raw) == 401
    assert [entry.detail["reason"] for entry in revocations(world.requester)] == ["password_changed"]


def test_signing_in_and_saving_the_person_otherwise_keeps_the_tokens(world: World, settings: Any) -> None:
    raw = issue(world.requester)
    # A hasher upgrade on sign-in re-saves the hash of the same password: not a change.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    web = Client()
    password_sign_in(web, "alice")
    world.requester.refresh_from_db()
    assert world.requester.password.startswith("pbkdf2_sha256$")
    world.requester.first_name = "Alicia"
    world.requester.save()
    # The same upgrade by the async check (an async sign-in path), and a save that writes no password.
    settings.PASSWORD_HASHERS = list(reversed(settings.PASSWORD_HASHERS))
    assert async_to_sync(world.requester.acheck_password)("pw-alice")
    world.requester.refresh_from_db()
    assert world.requester.password.startswith("md5$")
    world.requester.save(update_fields=["first_name"])
    assert api_status(raw) == 200
    assert revocations(world.requester) == []


def test_an_admin_deactivating_the_person_revokes_their_tokens(world: World) -> None:
    raw = issue(world.requester)
    client, _ = superuser_client()
    url = f"/admin/accounts/user/{world.requester.pk}/change/"
    post_ok(client, url, form_data(client, url, is_active=None))
    world.requester.refresh_from_db()
    assert not world.requester.is_active
    assert ApiToken.objects.filter(user=world.requester).count() == 0
    world.requester.is_active = True
    world.requester.save()
    assert api_status(raw) == 401  # active again, but the token is gone
    assert [entry.detail["reason"] for entry in revocations(world.requester)] == ["deactivated"]


def test_turning_totp_on_and_off_revokes_the_tokens(world: World, time_machine: TimeMachineFixture) -> None:
    time_machine.move_to(START, tick=False)
    alice = world.requester
    before = issue(alice)
    web = Client()
    password_sign_in(web, "alice")
    asked = web.get("/accounts/2fa/totp/activate/")
    web.post(asked["Location"], {"password": "pw-alice"})
    secret = web.get("/accounts/2fa/totp/activate/").context["form"].secret
    assert web.post("/accounts/2fa/totp/activate/", {"code": totp(secret)}).status_code == 302
    assert Authenticator.objects.filter(user=alice, type=Authenticator.Type.TOTP).exists()
    assert api_status(before) == 401
    assert [entry.detail["reason"] for entry in revocations(alice)] == ["second_factor_changed"]

    during = issue(alice)
    assert web.post("/accounts/2fa/totp/deactivate/").status_code == 302
    assert not Authenticator.objects.filter(user=alice, type=Authenticator.Type.TOTP).exists()
    assert api_status(during) == 401
    assert [entry.detail["reason"] for entry in revocations(alice)] == ["second_factor_changed"] * 2


def _confirmed_not_collected(user: User, *, client_name: str) -> cli_services.DeviceStart:
    """A `passport auth login` whose code the person (or whoever holds their session) confirmed, and
    whose CLI has not polled for its token yet."""
    started = cli_services.device_authorization_start(client_name=client_name)
    cli_services.device_authorization_confirm(
        user_code=started.user_code, user=user, session_ends_at=timezone.now() + timedelta(hours=8)
    )
    return started


def _change_password(user: User) -> None:
    user.set_password("a-brand-new-passw0rd-9!")
    user.save()


def _change_second_factor(user: User) -> None:
    Authenticator.objects.create(user=user, type=Authenticator.Type.RECOVERY_CODES, data={"seed": "00" * 20})


def _revoke_all(user: User) -> None:
    assert signed_in(user).post("/cli/sign-ins/revoke-all/").status_code == 302


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_change_password, "password_changed"),
        (_change_second_factor, "second_factor_changed"),
        (_revoke_all, "revoked"),
    ],
    ids=["password", "second-factor", "revoke-all"],
)
def test_a_code_confirmed_but_not_collected_yet_dies_with_the_tokens(world: World, change: Any, reason: str) -> None:
    """What revokes the person's CLI sign-ins revokes the one on its way too: a code confirmed by an
    intruder holding their session, polled for only after the person acted, gets no token."""
    alice = world.requester
    intruder = _confirmed_not_collected(alice, client_name="intruder")
    theirs = _confirmed_not_collected(world.member, client_name="erins-box")
    waiting = cli_services.device_authorization_start(client_name="not-confirmed-yet")

    change(alice)

    with pytest.raises(cli_services.DeviceFlowError) as refused:
        cli_services.device_token_exchange(device_code=intruder.device_code)
    assert refused.value.code == "invalid_grant"
    assert not ApiToken.objects.filter(user=alice).exists()
    voided = LogbookEntry.objects.get(action="cli.device_codes_voided")
    assert voided.detail == {"user": alice.username, "count": 1, "reason": reason}
    for code in (intruder.device_code, intruder.user_code, hash_token(intruder.device_code)):
        assert code not in str(voided.detail)
    # Someone else's sign-in, and a code nobody confirmed yet, are not touched.
    assert cli_services.device_token_exchange(device_code=theirs.device_code).username == world.member.username
    assert cli_services.device_authorization_pending(user_code=waiting.user_code) is not None


def test_a_revocation_with_no_code_on_its_way_adds_no_entry_for_codes(world: World) -> None:
    issue(world.requester)
    _revoke_all(world.requester)
    assert len(revocations(world.requester)) == 1
    assert not LogbookEntry.objects.filter(action="cli.device_codes_voided").exists()


# --- revoked on demand ---------------------------------------------------------------------------


def test_the_cli_sign_ins_page_lists_the_persons_live_tokens_only(world: World) -> None:
    mine = ApiToken.objects.get(token_hash=hash_token(issue(world.requester, name="passport CLI laptop-7")))
    ApiToken.objects.filter(pk=mine.pk).update(last_used_at=timezone.now() - timedelta(minutes=3))
    issue(world.requester, name="passport CLI old-box", expires_in=timedelta(minutes=-1))
    issue(world.member, name="passport CLI erins-box")

    client = signed_in(world.requester)
    page = client.get("/cli/sign-ins/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "laptop-7" in text and "old-box" not in text and "erins-box" not in text
    assert mine.token_hash not in text
    assert "3\xa0minutes ago" in text or "3 minutes" in text
    assert f'action="/cli/sign-ins/{mine.pk}/revoke/"' in text
    assert re.search(r'name="csrfmiddlewaretoken"', text)
    # The person menu leads there, beside the password and 2FA links.
    assert 'href="/cli/sign-ins/"' in client.get("/requests/").content.decode()


def test_the_person_revokes_one_token_then_all(world: World) -> None:
    laptop, desktop, phone = issue(world.requester), issue(world.requester), issue(world.requester)
    theirs = issue(world.member)
    client = signed_in(world.requester)
    laptop_row = ApiToken.objects.get(token_hash=hash_token(laptop))

    assert client.get(f"/cli/sign-ins/{laptop_row.pk}/revoke/").status_code == 405
    revoked = client.post(f"/cli/sign-ins/{laptop_row.pk}/revoke/")
    assert revoked.status_code == 302 and revoked["Location"] == "/cli/sign-ins/"
    assert api_status(laptop) == 401 and api_status(desktop) == 200
    entry = revocations(world.requester)[-1]
    assert entry.actor_id == world.requester.pk and entry.detail["reason"] == "revoked"
    assert entry.detail["token"] == laptop_row.pk

    # Someone else's token is not found, let alone revoked.
    their_row = ApiToken.objects.get(token_hash=hash_token(theirs))
    assert client.post(f"/cli/sign-ins/{their_row.pk}/revoke/").status_code == 404
    assert api_status(theirs) == 200

    assert client.post("/cli/sign-ins/revoke-all/").status_code == 302
    assert api_status(desktop) == 401 and api_status(phone) == 401 and api_status(theirs) == 200
    assert len(revocations(world.requester)) == 3


def test_revoking_needs_the_csrf_token(world: World) -> None:
    raw = issue(world.requester)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.requester)
    row = ApiToken.objects.get(token_hash=hash_token(raw))
    assert client.post(f"/cli/sign-ins/{row.pk}/revoke/").status_code == 403
    assert client.post("/cli/sign-ins/revoke-all/").status_code == 403
    assert api_status(raw) == 200


def test_signing_out_of_the_cli_is_on_the_record(world: World) -> None:
    raw = issue(world.requester)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.post("/api/cli/token/revoke/").status_code == 204
    assert api_status(raw) == 401
    assert [entry.detail["reason"] for entry in revocations(world.requester)] == ["signed_out"]


def test_using_a_token_records_when(world: World) -> None:
    raw = issue(world.requester)
    assert ApiToken.objects.get().last_used_at is None
    assert api_status(raw) == 200
    used = ApiToken.objects.get().last_used_at
    assert used is not None and timezone.now() - used < timedelta(minutes=1)


# --- the site admin ------------------------------------------------------------------------------


def test_a_site_admin_sees_and_revokes_tokens_in_the_admin(world: World) -> None:
    raw = issue(world.requester, name="passport CLI laptop-9")
    kept = issue(world.member)
    row = ApiToken.objects.get(token_hash=hash_token(raw))
    admin = make_user("root", is_superuser=True, is_staff=True)
    client = signed_in(admin)

    listing = client.get("/admin/accounts/apitoken/")
    assert listing.status_code == 200
    assert "laptop-9" in listing.content.decode() and row.token_hash not in listing.content.decode()
    change = client.get(f"/admin/accounts/apitoken/{row.pk}/change/")
    assert change.status_code == 200
    assert row.token_hash not in change.content.decode()
    assert 'name="name"' not in change.content.decode()  # read-only
    assert client.get("/admin/accounts/apitoken/add/").status_code == 403

    done = client.post(
        "/admin/accounts/apitoken/", {"action": "revoke_tokens", "_selected_action": [str(row.pk)]}, follow=True
    )
    assert done.status_code == 200
    assert api_status(raw) == 401 and api_status(kept) == 200
    entry = revocations(world.requester)[-1]
    assert entry.actor_id == admin.pk and entry.detail["reason"] == "revoked_by_admin"
    # The admin trail has it too, the hash named and not shown.
    trail = only_entry("admin.deleted", "accounts.apitoken")
    assert trail.actor_id == admin.pk and trail.detail["fields"]["token_hash"] == "(set)"
    assert row.token_hash not in str(trail.detail)


def test_a_person_who_is_not_staff_has_no_admin_view_of_tokens(world: World) -> None:
    issue(world.requester)
    assert signed_in(world.requester).get("/admin/accounts/apitoken/").status_code == 302


def test_a_client_name_with_hidden_characters_is_refused_and_an_old_one_is_shown_made_visible(world: World) -> None:
    # Whoever starts a sign-in names the client (no login needed), and the person confirming reads it.
    sent = "alice-laptop \u202e(devres-fles)"
    response = Client().post("/api/cli/device/", {"client_name": sent}, content_type="application/json")
    assert response.status_code == 400
    assert "U+202E" in str(response.json()["client_name"])
    assert not DeviceAuthorization.objects.exists()
    # One stored before names were checked is shown with the override as an escape.
    started = cli_services.device_authorization_start(client_name=sent)
    client = Client()
    client.force_login(world.requester)
    page = client.get(f"/cli/device/?code={started.user_code}").content.decode()
    assert "From: alice-laptop \\u202e(devres-fles)" in page and "\u202e" not in page
