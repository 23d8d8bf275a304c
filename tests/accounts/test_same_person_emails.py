"""Which emails are one person: one canonical form, the same in Python and in the database.

``permissions.same_person`` (asked of two loaded users) and ``permissions.same_person_users`` (a
filter: the approval count, Live now, the approval queue, the session cap) must give one answer,
whichever way round they are asked and however each user's email came in: a local user's through
``create_user`` (Django lowers its domain), an SSO user's as the identity provider sent it.
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from accounts import permissions
from accounts.email_keys import email_key
from accounts.models import User
from accounts.saml.config import identity_provider
from accounts.saml.services import SamlRefused, saml_person_sign_in
from audit.models import LogbookEntry
from tests.accounts.conftest import approved_once_by_one_person
from tests.accounts.test_saml import idps  # noqa: F401  (the IdPs, autouse)
from tests.conftest import World
from tests.factories import make_membership

pytestmark = pytest.mark.usefixtures("no_workers")

APPROVER_OF_PROD = ["passport:111111111111:admin", "passport:111111111111:approver"]


def local_user(world: World, email: str) -> User:
    """A break-glass account a site admin made: an approver of prod."""
    local = User.objects.create_user(username="deniz-local", email=email, password="pw")
    make_membership(local, world.prod, "admin", can_approve=True)
    return local


def sso_user(email: str) -> User:
    """The same person as their identity provider signs them in: the email stored as sent."""
    idp = identity_provider("customer")
    assert idp is not None
    attributes = {"email": email, "first_name": "Deniz", "last_name": "Sso", "groups": APPROVER_OF_PROD}
    user = saml_person_sign_in(idp=idp, name_id="deniz-sso-name-id", attributes=attributes)
    assert user.email == email.strip(), "the IdP's email is stored as sent (trimmed)"
    return user


def answers(one: User, other: User) -> tuple[bool, bool, bool, bool]:
    """same_person both ways round, and same_person_users from each side."""
    return (
        permissions.same_person(one, other),
        permissions.same_person(other, one),
        permissions.same_person_users(one).filter(pk=other.pk).exists(),
        permissions.same_person_users(other).filter(pk=one.pk).exists(),
    )


def test_one_person_counts_once_among_approvals_when_the_database_would_lower_case_otherwise(
    world: World,
) -> None:
    """U+0130 (capital I with a dot): Python lowers it to "i" + U+0307, PostgreSQL to "i"."""
    local = local_user(world, "deniz@\u0130zmir.example")  # stored with the domain lowered by Django
    sso = sso_user("deniz@\u0130zmir.example")  # stored as the IdP sent it
    assert local.email != sso.email

    approved_once_by_one_person(world, sso, local)


def test_one_person_counts_once_when_a_mark_the_mail_drops_sits_in_the_domain(world: World) -> None:
    """U+034F (a combining mark, not a format character) passes the IdP's checks and shows nothing;
    mail to either address reaches one mailbox, as IDNA maps it to nothing."""
    sso = sso_user("deniz@ac\u034fme.example")
    local = local_user(world, "deniz@acme.example")

    approved_once_by_one_person(world, sso, local)


@pytest.mark.parametrize(
    ("local_email", "sso_email"),
    [
        ("deniz@\u0130zmir.example", "deniz@\u0130zmir.example"),
        ("Deniz@\u0130ZMIR.example", "DENIZ@i\u0307zmir.example"),
        # Fullwidth letters and at sign: the same address to anyone reading it.
        ("\uff44\uff45\uff4e\uff49\uff5a\uff20acme.example", "deniz@acme.example"),
        # Spaces around, and a domain in mixed case.
        ("deniz@acme.example  ", "  deniz@AcMe.EXAMPLE "),
        # German sharp s: casefolded to "ss" (see accounts.email_keys.email_key on why merging is the safe side).
        ("deniz@stra\u00dfe.example", "DENIZ@STRASSE.example"),
        # A soft hyphen shows nothing: the two read alike.
        ("deniz@acme.example", "deniz@ac\u00adme.example"),
        # Mail to a domain goes out IDNA-encoded (Django, Python's idna codec), which maps these to
        # nothing (RFC 3454 table B.1): one mailbox, though they are marks (Mn), not format characters.
        ("deniz@acme.example", "deniz@ac\u034fme.example"),  # combining grapheme joiner
        ("deniz@acme.example", "deniz@acme\ufe0f.example"),  # variation selector 16
        ("deniz@acme.example", "deniz@ac\u180bme.example"),  # Mongolian free variation selector
        # A domain as IDNA writes it (its A-label) and as people do.
        ("deniz@b\u00fccher.example", "deniz@xn--bcher-kva.example"),
        # The ideographic full stop separates labels as a dot does.
        ("deniz@acme\u3002example", "deniz@acme.example"),
        # A quoted local part that needs no quotes is the same mailbox (RFC 5321 4.1.2); mail is sent unquoted.
        ('"deniz"@acme.example', "deniz@acme.example"),
    ],
)
def test_one_person_whatever_form_their_email_takes(world: World, local_email: str, sso_email: str) -> None:
    local, sso = local_user(world, local_email), sso_user(sso_email)

    assert answers(local, sso) == (True, True, True, True)


@pytest.mark.parametrize(
    ("local_email", "sso_email"),
    [
        ("deniz@acme.example", "den1z@acme.example"),
        ("deniz@acme.example", "deniz@acme.example.org"),
        ("deniz@acme.example", "deniz.x@acme.example"),
        ("deniz@izmir.example", "deniz@\u0130zmir.example"),  # a dotted i is not a plain one
        # Nothing on the mail's way drops these from the local part or guesses a provider's rules.
        ("deniz\u034f@acme.example", "deniz@acme.example"),
        ("deniz@acme.example", "deniz+approver@acme.example"),
        ('"deniz x"@acme.example', "denizx@acme.example"),
        ("", ""),  # no email: nobody is known to be the same person
        ("   ", ""),
    ],
)
def test_two_people_stay_two(world: World, local_email: str, sso_email: str) -> None:
    local, sso = local_user(world, local_email), sso_user(sso_email)

    assert answers(local, sso) == (False, False, False, False)
    assert set(permissions.same_person_users(local)) == {local}


def test_a_domain_the_idna_codec_refuses_is_folded_as_the_codec_would_have() -> None:
    """No mail goes to such a domain (an empty label, a label past 63 characters), yet two forms of it
    that would have met are one key all the same, and nothing an address holds makes the key fail."""
    assert email_key("deniz@ac\u034fme..example") == email_key("deniz@acme..example")
    assert email_key("deniz@acme\u3002\uff61example") == email_key("deniz@acme..example")
    assert email_key(f"deniz@{'a' * 64}\ufe0f.example") == email_key(f"deniz@{'a' * 64}.example")
    assert email_key("deniz@acme..example") != email_key("deniz@acme.example")
    for hostile in ("(" * 300 + "a@x", '"' + "\\" * 200, "@", "a@", "@@\x00@", "a@[127.0.0.1]", "a@" + "\ufdfa" * 252):
        assert len(email_key(hostile)) == 64


def test_every_save_keeps_the_key_and_the_migration_fills_it_for_users_made_before(world: World) -> None:
    local = local_user(world, "Deniz@ACME.example")
    sso = sso_user("deniz@acme.example")
    # An admin changes the local user's email (a save naming its fields): no longer the same person.
    local.email = "someone@else.example"
    local.save(update_fields=["email"])
    assert answers(local, sso) == (False, False, False, False)
    local.email = "DENIZ@acme.example"
    local.save()
    assert answers(local, sso) == (True, True, True, True)

    # Users stored before the key existed: the migration computes it for each. (Written past the trailed
    # manager, as rows of then were: its update() makes the key anew, accounts.change_trail_bulk.)
    User._base_manager.update(email_key="")
    migration = importlib.import_module("accounts.migrations.0013_user_email_key")
    migration.fill_email_keys(apps, None)
    local.refresh_from_db()
    sso.refresh_from_db()
    assert answers(local, sso) == (True, True, True, True)
    nobody = User.objects.create_user(username="no-email", email="")
    User._base_manager.filter(pk=nobody.pk).update(email_key="stale")
    migration.fill_email_keys(apps, None)
    assert User.objects.get(pk=nobody.pk).email_key == ""
    assert User.objects.exclude(email="").filter(email_key="").count() == 0


def test_a_later_migration_recomputes_the_keys_of_users_made_before_the_mail_domain_counted(world: World) -> None:
    """Keys stored while a domain's IDNA mapping did not count (migration 0013) are computed again."""
    local = local_user(world, "deniz@ac\u034fme.example")
    sso = sso_user("deniz@acme.example")
    before = importlib.import_module("accounts.migrations.0013_user_email_key")
    User._base_manager.filter(pk=local.pk).update(email_key="stale")
    local.refresh_from_db()
    assert answers(local, sso) == (False, False, False, False)

    migration = importlib.import_module("accounts.migrations.0014_email_key_mail_domain")
    assert migration.fill_email_keys is not before.fill_email_keys
    migration.fill_email_keys(apps, None)
    local.refresh_from_db()
    assert answers(local, sso) == (True, True, True, True)


def test_a_customer_idp_naming_an_internal_person_s_email_signs_nobody_in(world: World) -> None:
    """A customer's IdP sends the provider's site admin's email for one of its people. Stored, it would
    make that person the site admin's (who could then no longer decide their requests nor watch their
    sessions); dropped, a human who is both could approve their own requests. Refused, on record, and
    no person made; the site admin is untouched."""
    ops = User.objects.create_user(
        username="ops", email="ops@provider.test", password="pw-ops", is_superuser=True, is_staff=True,
        identity_store=User.IdentityStore.INTERNAL,
    )  # fmt: skip
    idp = identity_provider("customer")
    assert idp is not None
    before = set(User.objects.values_list("pk", flat=True))
    attributes = {"email": "OPS@Provider.test", "first_name": "M", "last_name": "X", "groups": APPROVER_OF_PROD}
    with pytest.raises(SamlRefused) as refused:
        saml_person_sign_in(idp=idp, name_id="mallory-name-id", attributes=attributes)
    assert refused.value.reason == "email_of_internal_store"
    assert set(User.objects.values_list("pk", flat=True)) == before, "no person made"
    (entry,) = LogbookEntry.objects.filter(action="auth.saml_person_refused")
    assert entry.detail["reason"] == "the email is an internal store person's"
    assert entry.detail["internal_user_ids"] == [ops.pk]


def test_a_person_already_signed_in_by_a_customer_idp_is_refused_once_it_sends_an_internal_email(
    world: World,
) -> None:
    person = sso_user("deniz@acme.example")
    User.objects.create_user(
        username="ops", email="ops@provider.test", password="pw", identity_store=User.IdentityStore.INTERNAL
    )
    idp = identity_provider("customer")
    assert idp is not None
    attributes = {"email": "ops@provider.test", "groups": APPROVER_OF_PROD}
    with pytest.raises(SamlRefused):
        saml_person_sign_in(idp=idp, name_id="deniz-sso-name-id", attributes=attributes)
    person.refresh_from_db()
    assert person.email == "deniz@acme.example", "the email it had is kept"


def test_a_site_admins_break_glass_account_and_their_internal_sign_in_stay_one_person(world: World) -> None:
    """createsuperuser makes a customer-store user; the same human's internal IdP user has their email.
    They are one person: neither may decide the other's requests."""
    local = local_user(world, "ops@provider.test")
    assert local.identity_store == User.IdentityStore.CUSTOMER
    idp = identity_provider("internal")
    assert idp is not None
    attributes = {"email": "ops@provider.test", "first_name": "O", "last_name": "P", "groups": APPROVER_OF_PROD}
    internal = saml_person_sign_in(idp=idp, name_id="ops-internal", attributes=attributes)
    assert internal.identity_store == User.IdentityStore.INTERNAL
    assert answers(local, internal) == (True, True, True, True)
