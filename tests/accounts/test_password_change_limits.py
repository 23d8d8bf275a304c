"""The password-change page checks the current password as a sign-in does (accounts.password_forms'
override of allauth's form): on the same per-person count of guesses (5 in 5 minutes, shared with
the sign-in page), each wrong one on record (``auth.sign_in_refused``), and past the limit refused
unchecked, the right password too, and on record (``rate_limited``). A session of the person, left
open or taken, is no faster way to guess their password. Through the real pages; allauth's own
limit on the page (``change_password``, 5 a minute) is kept apart by spreading the posts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.models import User
from audit.models import LogbookEntry
from tests.conftest import World

pytestmark = pytest.mark.django_db

NEW = "N3w-long-passphrase!"


@pytest.fixture(autouse=True)
def production_limits(settings: Any) -> None:
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
    cache.clear()


def _change(client: Client, old: str) -> Any:
    return client.post("/accounts/password/change/", {"oldpassword": old, "password1": NEW, "password2": NEW})


def _alices_session(world: World) -> Client:
    client = Client(REMOTE_ADDR="198.51.100.7")
    client.force_login(world.requester)
    return client


def _refusal_reasons() -> list[str]:
    return [
        entry.detail["reason"] for entry in LogbookEntry.objects.filter(action="auth.sign_in_refused").order_by("id")
    ]


def test_guesses_on_the_change_form_are_held_to_the_persons_five_and_on_record(world: World, time_machine: Any) -> None:
    start = timezone.now()
    client = _alices_session(world)
    checked = limited = 0
    for minute in range(4):
        time_machine.move_to(start + timedelta(seconds=61 * minute), tick=False)
        for attempt in range(5):
            response = _change(client, f"guess-{minute}-{attempt}")
            assert response.status_code == 200
            errors = response.context["form"].errors
            checked += "oldpassword" in errors
            limited += "__all__" in errors and "oldpassword" not in errors
    time_machine.move_to(start + timedelta(seconds=61 * 4), tick=False)
    right = _change(client, "pw-alice")

    assert (checked, limited) == (5, 15)
    # Still within the 5 minutes: the right password is refused unchecked as well.
    assert right.status_code == 200 and "__all__" in right.context["form"].errors
    world.requester.refresh_from_db()
    assert world.requester.check_password("pw-alice")
    assert sorted(set(_refusal_reasons())) == ["rate_limited", "wrong_password"]
    entries = LogbookEntry.objects.filter(action="auth.sign_in_refused")
    assert {entry.detail["person"] for entry in entries} == {"alice"}
    assert "guess-" not in str(list(LogbookEntry.objects.values_list("detail", flat=True)))


def test_the_change_form_shares_the_count_with_the_sign_in_page(world: World) -> None:
    for attempt in range(5):
        guesser = Client(REMOTE_ADDR=f"203.0.113.{attempt + 1}")
        guesser.post("/accounts/login/", {"login": "ALICE@example.test", "password": f"guess-{attempt}"})
    response = _change(_alices_session(world), "pw-alice")

    assert response.status_code == 200 and "__all__" in response.context["form"].errors
    assert User.objects.get(pk=world.requester.pk).check_password("pw-alice")
    assert _refusal_reasons()[-1] == "rate_limited"


def test_the_right_password_under_the_limit_changes_it_and_gives_the_guess_back(world: World) -> None:
    client = _alices_session(world)
    wrong = _change(client, "not-her-password")
    right = _change(client, "pw-alice")

    assert "oldpassword" in wrong.context["form"].errors
    assert right.status_code == 302
    assert User.objects.get(pk=world.requester.pk).check_password(NEW)
    assert LogbookEntry.objects.filter(action="auth.password_changed", detail__how="self").count() == 1
    assert _refusal_reasons() == ["wrong_password"]
