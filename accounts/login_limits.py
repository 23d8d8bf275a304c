"""Whose counts a wrong password is on: ``login_limit_keys``, the keys of allauth's per-person limit on
password guesses (``ACCOUNT_RATE_LIMITS``' ``login_failed`` "…/key" part; the adapter checks and
takes each of them, accounts.adapters).

allauth's own key is the login as typed, lowered, after the Host header: a person named by username
and by email would be two counts, and so would each Host value Django accepts (every port of an
allowed host), which would let one person's password be guessed that many times over. Here the key
is the person: the users the login could sign in as (by username or by email, as allauth's backend
tries both for any login) under their email key (``accounts.email_keys``: the users of one person
share it, ``accounts.permissions.same_person``), or the user's id for one without an email. A login
that names nobody is keyed by the same folding of what was typed, so it is held to the same number of
guesses as one that names someone: the limit does not tell who has an account. A login that names
two people (a username that reads as another's email) is on both counts: it could sign in as
either. The key is a digest or an id, never the text typed (which may hold anything: control
characters, newlines)."""

from __future__ import annotations

from django.db.models import Q

from accounts.email_keys import email_key
from accounts.models import User


def _people_keys(names: Q) -> set[str]:
    return {
        f"person:{key}" if key else f"user:{pk}"
        for pk, key in User.objects.filter(names).values_list("pk", "email_key").distinct()
    }


def login_limit_keys(*, login: str, by_username: bool = True) -> list[str]:
    """Every count a password guess at ``login`` goes on, whatever Host or form of the login, in a
    stable order; one at least. One query.

    Several only where a username reads as another person's email: the guess could sign in as
    either, so it is on each one's count (the adapter checks and takes every one), and neither
    person's password gets more guesses for being named two ways. ``by_username=False``: only the
    people whose email it is (what a password reset by that address clears)."""
    typed = email_key(login)
    if "\x00" in login:
        # No stored name holds one (PostgreSQL's text cannot), and the database would refuse the query.
        return [f"person:{typed or email_key(repr(login))}"]
    names = Q(emailaddress__email__iexact=login)
    if by_username:
        names |= Q(username__iexact=login)
    if typed:
        names |= Q(email_key=typed)
    people = _people_keys(names)
    if people:
        return sorted(people)
    return [f"person:{typed or email_key(repr(login))}"]


def login_limit_key(*, login: str) -> str:
    """The first of ``login_limit_keys``: the count a guess at ``login`` goes on when it names one person."""
    return login_limit_keys(login=login)[0]
