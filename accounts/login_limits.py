"""Whose count a wrong password is on: ``login_limit_key``, the key of allauth's per-person limit on
password guesses (``ACCOUNT_RATE_LIMITS``' ``login_failed`` "…/key" part; the adapter hands it over).

allauth's own key is the login as typed, lowered, after the Host header: a person named by username
and by email would be two counts, and so would each Host value Django accepts (every port of an
allowed host), which would let one person's password be guessed that many times over. Here the key
is the person: the users the login could sign in as (by username or by email, as allauth's backend
tries both for any login) under their email key (``accounts.email_keys``: the users of one person
share it, ``accounts.permissions.same_person``), or the user's id for one without an email. A login
that names nobody is keyed by the same folding of what was typed, so it is held to the same number of
guesses as one that names someone: the limit does not tell who has an account. The key is a digest
or an id, never the text typed (which may hold anything: control characters, newlines)."""

from __future__ import annotations

from django.db.models import Q

from accounts.email_keys import email_key
from accounts.models import User


def login_limit_key(*, login: str) -> str:
    """The one count a password guess at ``login`` goes on, whatever Host or form of the login. One query."""
    typed = email_key(login)
    if "\x00" in login:
        # No stored name holds one (PostgreSQL's text cannot), and the database would refuse the query.
        return f"person:{typed or email_key(repr(login))}"
    names = Q(username__iexact=login) | Q(emailaddress__email__iexact=login)
    if typed:
        names |= Q(email_key=typed)
    people = {
        f"person:{key}" if key else f"user:{pk}"
        for pk, key in User.objects.filter(names).values_list("pk", "email_key").distinct()
    }
    if people:
        # Two people only where a username reads as another's email: the lower key, the same every time.
        return min(people)
    return f"person:{typed or email_key(repr(login))}"
