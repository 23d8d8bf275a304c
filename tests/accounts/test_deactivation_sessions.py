"""A person deactivated is signed out for good: every browser session from before the deactivation
stays signed out when they are made active again (accounts.signals renews their security stamp,
accounts.session_stamps), whichever way the "Active" box was cleared: a save, a queryset's update(),
the admin. Their open terminals' sign-in check fails as well, then and after."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from audit.models import LogbookEntry
from terminal import services as terminal_services
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.conftest import World

pytestmark = pytest.mark.django_db

PAGE = "/cli/sign-ins/"


def _signed_in_browser() -> Client:
    browser = Client()
    assert browser.post("/accounts/login/", {"login": "alice", "password": "pw-alice"}).status_code == 302
    assert browser.get(PAGE).status_code == 200
    return browser


def _set_active(how: str, person: User, active: bool, admin: Client | None) -> None:
    if how == "save":
        person.refresh_from_db()
        person.is_active = active
        person.save()
    elif how == "update":
        assert User.objects.filter(pk=person.pk).update(is_active=active) == 1
    else:  # the admin's "Active" box
        assert admin is not None
        url = f"/admin/accounts/user/{person.pk}/change/"
        post_ok(admin, url, form_data(admin, url, is_active="on" if active else None))
        person.refresh_from_db()
        assert person.is_active is active


@pytest.mark.parametrize("how", ["save", "update", "admin"])
def test_a_session_from_before_a_deactivation_stays_signed_out_after_reactivation(world: World, how: str) -> None:
    alice = world.requester
    admin = superuser_client()[0] if how == "admin" else None
    stolen = _signed_in_browser()
    session_key = stolen.session.session_key

    _set_active(how, alice, False, admin)
    assert stolen.get(PAGE).status_code == 302  # signed out while inactive
    _set_active(how, alice, True, admin)

    # The session the admin meant to end does not come back with the person.
    assert stolen.get(PAGE).status_code == 302
    assert not terminal_services.terminal_session_signed_in(session_key=session_key, user_id=alice.pk)
    # A sign-in after the reactivation is hers to keep.
    assert _signed_in_browser().get(PAGE).status_code == 200


def test_an_unused_session_stays_out_and_the_saved_instance_cannot_bring_the_old_stamp_back(world: World) -> None:
    """Deactivated and reactivated through one instance, never read again in between, by a session that
    was not used meanwhile (so Django never flushed it)."""
    alice = world.requester
    stolen = _signed_in_browser()
    session_key = stolen.session.session_key

    alice.is_active = False
    alice.save()
    alice.is_active = True
    alice.save()

    assert not terminal_services.terminal_session_signed_in(session_key=session_key, user_id=alice.pk)
    assert stolen.get(PAGE).status_code == 302


def test_another_save_of_an_active_person_signs_nobody_out(world: World) -> None:
    browser = _signed_in_browser()
    alice = User.objects.get(pk=world.requester.pk)
    alice.first_name = "Alicia"
    alice.save()
    User.objects.filter(pk=alice.pk).update(is_active=True)  # already active: nothing changed
    assert browser.get(PAGE).status_code == 200


def test_a_save_of_a_person_read_before_the_deactivation_does_not_bring_the_sessions_back(world: World) -> None:
    stale = User.objects.get(pk=world.requester.pk)  # a script's instance, read before
    stolen = _signed_in_browser()
    _set_active("update", world.requester, False, None)
    _set_active("update", world.requester, True, None)

    stale.first_name = "Alicia"
    stale.save()

    assert stolen.get(PAGE).status_code == 302


def test_a_deactivation_in_the_admin_shows_the_stamp_only_as_changed(world: World) -> None:
    admin, _ = superuser_client()
    _signed_in_browser()
    _set_active("admin", world.requester, False, admin)
    changed = LogbookEntry.objects.filter(action="admin.changed").latest("id").detail["changes"]
    assert changed["is_active"] == {"before": True, "after": False}
    assert changed["security_stamp"] == "(changed)"
    stamp = User.objects.get(pk=world.requester.pk).security_stamp
    assert stamp and not LogbookEntry.objects.filter(detail__icontains=stamp).exists()
