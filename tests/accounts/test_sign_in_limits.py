"""The per-person limit on wrong passwords (ACCOUNT_RATE_LIMITS' ``5/5m/key``) holds for the person,
however the login is typed (username or email, in any case) and whatever Host the request names
(every port of an allowed host is one to Django): five password checks in five minutes, then the
form refuses without checking. A login that names nobody is held to the same five, so the limit
does not tell who has an account. Counted with Django's ``user_login_failed``, sent once for each
password the backends actually checked; a new client address each time, so the per-address limit
(``10/m/ip``) is not what stops them."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.account.adapter import get_adapter
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.test import Client, RequestFactory

from accounts.change_trail import changes_recorded_elsewhere
from accounts.models import SamlIdentity, User
from audit.models import LogbookEntry
from tests.conftest import World

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_counts(settings: Any) -> None:
    # The limit as production sets it (another test module may have loosened it), with empty counters.
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()


class _Guesser:
    """Posts the sign-in form, each time from a new address; counts the passwords actually checked."""

    def __init__(self) -> None:
        self.tries = 0
        self.checked = 0
        self.response: Any = None

    def __call__(self, login: str, *, host: str = "testserver", password: str = "") -> Client:
        self.tries += 1
        client = Client(REMOTE_ADDR=f"198.51.100.{self.tries}", HTTP_HOST=host)
        checked: list[Any] = []

        def count(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
            checked.append(credentials)

        user_login_failed.connect(count, dispatch_uid="test-sign-in-limits")
        try:
            response = client.post("/accounts/login/", {"login": login, "password": password or f"guess-{self.tries}"})
        finally:
            user_login_failed.disconnect(dispatch_uid="test-sign-in-limits")
        assert response.status_code in (200, 302, 429)
        self.checked += len(checked)
        self.response = response
        return client


def test_a_person_gets_five_guesses_whether_named_by_username_or_email(world: World) -> None:
    guess = _Guesser()
    for login in ["alice"] * 3 + ["alice@example.test"] * 3 + ["ALICE", "Alice@Example.TEST"]:
        guess(login)
    assert guess.checked == 5


def test_a_person_gets_five_guesses_whatever_host_and_port_the_request_names(world: World) -> None:
    guess = _Guesser()
    hosts = ["testserver", "localhost", "127.0.0.1", "[::1]"] + [f"localhost:{8000 + n}" for n in range(8)]
    for host in hosts:
        guess("alice", host=host)
    assert guess.checked == 5


def test_a_login_that_names_nobody_is_held_to_the_same_five(world: World) -> None:
    guess = _Guesser()
    for n in range(12):
        guess("nobody-here" if n % 2 else "NOBODY-HERE", host=f"localhost:{9000 + n}")
    assert guess.checked == 5
    # Nor does the limit set an existing person apart: alice, counted alike, gets the same five.
    alice = _Guesser()
    for n in range(12):
        alice("alice" if n % 2 else "ALICE", host=f"localhost:{9000 + n}")
    assert alice.checked == 5


def test_one_persons_guesses_leave_others_alone_and_the_right_password_still_works_for_them(world: World) -> None:
    guess = _Guesser()
    for _ in range(6):
        guess("alice")
    assert guess.checked == 5
    before = guess.checked
    client = guess("erin@example.test", password="pw-erin")
    assert guess.checked == before
    assert client.session.get("_auth_user_id") == str(world.member.pk)


def test_the_limit_holds_for_the_person_even_with_the_right_password_after_it(world: World) -> None:
    guess = _Guesser()
    for login in ["alice", "alice@example.test"] * 3:
        guess(login)
    client = guess("alice@example.test", password="pw-alice")
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    "login",
    [
        "mallory\n",
        "mall\x00ory",
        "mall\u202eyro",
        'mal"lory; rm -rf /',
        "mallory\r\nHost: evil",
        "\u200bmallory",
        "m" * 400,
    ],
)
def test_hostile_logins_are_limited_like_any_other(world: World, login: str) -> None:
    guess = _Guesser()
    for n in range(8):
        guess(login, host=f"localhost:{7000 + n}")
    assert guess.checked <= 5


def _answer(response: Any) -> tuple[int, str, bool]:
    """What the page tells whoever posted: the status, where it sends them, whether it says the password is wrong."""
    wrong = b"The username and/or password you specified are not correct." in response.content
    return response.status_code, response.get("Location", ""), wrong


@pytest.mark.parametrize("through_an_idp", [False, True])
def test_a_deactivated_persons_right_password_is_answered_and_counted_as_a_wrong_one(
    world: World, through_an_idp: bool
) -> None:
    """No page tells a deactivated person's right password from a wrong one (allauth's own sends the
    right one to its "account inactive" page), and each is one of the five guesses, as a wrong one is:
    allauth gives back the guess of a password that works, which would leave it unlimited."""
    erin = world.member
    if through_an_idp:  # a person who signs in through their IdP, with a password an admin set
        SamlIdentity.objects.create(user=erin, identity_store=erin.identity_store, name_id="erin", idp_slug="customer")
    erin.is_active = False
    erin.save()
    guess = _Guesser()
    guess("erin", password="not-erins-password")
    wrong = _answer(guess.response)
    assert wrong == (200, "", True)
    for _ in range(4):
        guess("erin", password="pw-erin")
        assert _answer(guess.response) == wrong
    assert guess.checked == 5
    guess("erin", password="pw-erin")
    assert guess.checked == 5, "a sixth guess was checked: the right password's were not counted"
    refused = LogbookEntry.objects.filter(action="auth.sign_in_refused").order_by("id").values_list("detail", flat=True)
    assert {one["person"] for one in refused} == {"erin"}
    assert {one["reason"] for one in refused} == {"wrong_password", "rate_limited"}


def test_users_of_one_person_share_a_count(world: World) -> None:
    """Two users with one email key are one person (accounts.permissions.same_person): one count."""
    second = User.objects.create_user(username="alice-ops", email="Alice@Example.Test", password="pw-ops")
    assert second.email_key == world.requester.email_key
    guess = _Guesser()
    for login in ["alice", "alice-ops"] * 4:
        guess(login)
    assert guess.checked == 5


def _other_named_by_the_email_of(alice: User) -> str:
    """Another person whose username is alice's email; their own address makes their count sort
    before hers (what whoever controls that user would pick). Returns that address."""
    n = 0
    while True:  # whoever controls the other user picks an address whose count would sort first
        with changes_recorded_elsewhere():
            other = User.objects.create_user(username=alice.email, email=f"m{n}@elsewhere.test", password="pw-m")
        if other.email_key and other.email_key < (alice.email_key or ""):
            return other.email
        other.delete()
        n += 1


def test_a_login_naming_two_people_counts_against_each_so_neither_gets_more_than_five(world: World) -> None:
    """A username may read as another person's email (an IdP's username attribute keeps its "@"):
    a guess typed that way goes on both people's counts, whichever sorts first, so that alice's
    password gets five guesses in five minutes however she is named, not five more by her email."""
    alice = world.requester
    address = _other_named_by_the_email_of(alice)
    guess = _Guesser()
    for attempt in range(12):
        guess("alice" if attempt % 2 else alice.email)
    assert guess.checked == 5
    # The other person's own count took the guesses typed as the shared name too.
    other_guess = _Guesser()
    for _ in range(6):
        other_guess(address)
    assert other_guess.checked < 5
    # Someone named by neither keeps all five.
    erin = _Guesser()
    for _ in range(6):
        erin("erin")
    assert erin.checked == 5


def test_a_password_reset_clears_the_count_of_the_people_whose_address_it_is_only(world: World) -> None:
    alice = world.requester
    address = _other_named_by_the_email_of(alice)
    guess = _Guesser()
    for _ in range(5):
        guess(alice.email)  # on alice's count and the other person's
    assert guess.checked == 5

    # What allauth calls once alice reset her password by mail, for each of her addresses.
    request = RequestFactory().post("/accounts/password/reset/key/done/")
    get_adapter(request)._delete_login_attempts_cached_email(request, email=alice.email)

    after = _Guesser()
    after("alice")
    assert after.checked == 1  # hers is clear
    after(address)
    assert after.checked == 1  # the other's is not: their username only reads as her address
