"""The IAM principal of people from an identity provider: AWS's SAML Role attribute, or the
account's default role for federated people, and what the create form says without one.

Signed assertions go through the real ACS (helpers of tests/accounts/test_saml.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import Membership, SamlIdentity
from accounts.saml.roles import saml_roles_parse
from accounts.selectors import principal_arn_for
from audit.models import LogbookEntry
from devcloud.idp import Person
from tests.accounts.test_saml import CAROL, CUSTOMER, idps, sign_in, signed_in_user  # noqa: F401
from tests.conftest import World
from tests.factories import make_membership

PROD_ROLE = "arn:aws:iam::111111111111:role/CustomerOperators"
PROD_PROVIDER = "arn:aws:iam::111111111111:saml-provider/CustomerIdP"


def carol_with(roles: list[str], groups: list[str] | None = None) -> Person:
    return Person(CAROL.name_id, CAROL.email, "Carol", "Customer", groups or list(CAROL.groups), roles)


@pytest.fixture
def client() -> Client:
    return Client()


def test_the_role_attribute_sets_the_principal_at_each_sign_in(world: World, client: Client) -> None:
    # Provider first: AWS accepts either order.
    sign_in(client, "customer", CUSTOMER, carol_with([f"{PROD_PROVIDER},{PROD_ROLE}"]))
    carol = signed_in_user(client)
    assert carol is not None
    assert Membership.objects.get(user=carol, account=world.prod).principal_arn == PROD_ROLE
    synced = LogbookEntry.objects.filter(action="auth.saml_synced", actor=carol).latest("id")
    assert synced.detail["principals_set"] == {"111111111111": PROD_ROLE}
    # The IdP stops sending it: the IdP's membership loses it too.
    client.logout()
    sign_in(client, "customer", CUSTOMER, carol_with([]))
    assert Membership.objects.get(user=carol, account=world.prod).principal_arn == ""


def test_a_role_for_another_account_is_refused_and_recorded(world: World, client: Client) -> None:
    other = "arn:aws:iam::333333333333:role/CustomerOperators,arn:aws:iam::333333333333:saml-provider/CustomerIdP"
    mixed = f"{PROD_ROLE},arn:aws:iam::999999999999:saml-provider/CustomerIdP"
    hostile = "arn:aws:iam::111111111111:role/x<script>,arn:aws:iam::111111111111:saml-provider/y"
    sign_in(client, "customer", CUSTOMER, carol_with([other, mixed, hostile, "nonsense"]))
    carol = signed_in_user(client)
    assert carol is not None
    assert set(Membership.objects.filter(user=carol).values_list("principal_arn", flat=True)) == {""}
    refused = LogbookEntry.objects.get(action="auth.saml_role_refused", actor=carol).detail
    reasons = {item["value"]: item["reason"] for item in refused["refused"]}
    assert reasons["arn:aws:iam::333333333333:role/CustomerOperators"] == "no membership on account 333333333333"
    assert reasons[mixed] == "the role and the provider are in different accounts"
    assert reasons[hostile] == reasons["nonsense"] == "not a role ARN and a provider ARN"


@pytest.mark.parametrize(
    "named",
    [
        "arn:aws:iam::111111111111:role/PassportPortal",
        # Role names are unique in an account whatever their path or case: the same role to IAM.
        "arn:aws:iam::111111111111:role/team/passportportal",
    ],
)
def test_the_portals_own_role_is_nobodys_principal_and_naming_it_is_recorded(
    world: World, client: Client, named: str
) -> None:
    """IAM is asked about the principal: the role the portal assumes in the account may do everything
    Passport does, so an IdP naming it would switch the customer's IAM limits off for the person."""
    assert world.prod.role_arn == "arn:aws:iam::111111111111:role/PassportPortal"
    sign_in(client, "customer", CUSTOMER, carol_with([f"{named},{PROD_PROVIDER}"]))
    carol = signed_in_user(client)
    assert carol is not None

    membership = Membership.objects.get(user=carol, account=world.prod)
    assert (membership.role, membership.can_approve, membership.principal_arn) == ("admin", True, "")
    assert principal_arn_for(user=carol, account=world.prod) == ""
    refused = LogbookEntry.objects.get(action="auth.saml_role_refused", actor=carol).detail
    assert refused == {
        "idp": "customer",
        "refused": [{"value": named, "reason": "the role Passport itself assumes in the account"}],
    }


def test_a_stored_portal_role_is_not_asked_about_and_nor_is_a_default_naming_it(world: World) -> None:
    """A membership or an account stored before these checks (or written past them) names the portal's
    role: IAM is not asked about it, and the person has no principal there."""
    Membership.objects.filter(user=world.requester, account=world.prod).update(principal_arn=world.prod.role_arn)
    assert principal_arn_for(user=world.requester, account=world.prod) == ""

    SamlIdentity.objects.create(user=world.outsider, identity_store="customer", name_id="m@x.test", idp_slug="c")
    Membership.objects.create(user=world.outsider, account=world.prod, role="admin")
    world.prod.federated_role_arn = world.prod.role_arn.replace("PassportPortal", "PASSPORTPORTAL")
    world.prod.save(update_fields=["federated_role_arn"])
    assert principal_arn_for(user=world.outsider, account=world.prod) == ""


def test_two_roles_for_one_account_are_ambiguous() -> None:
    second = PROD_ROLE.replace("CustomerOperators", "Other")
    named = saml_roles_parse([f"{PROD_ROLE},{PROD_PROVIDER}", f"{second},{PROD_PROVIDER}"])
    assert named.by_account == {}
    assert named.refused[0]["reason"] == "several roles named for account 111111111111"


def test_the_form_says_before_it_is_filled_in_why_a_federated_person_cannot_ask(
    world: World, client: Client, settings: Any
) -> None:
    settings.PASSPORT_IAM_CHECK = True
    sign_in(client, "customer", CUSTOMER, carol_with([]))
    page = client.get("/requests/new/").content.decode()
    assert "You have no IAM principal on Acme Production (111111111111)" in page
    assert "identity provider" in page and "https://aws.amazon.com/SAML/Attributes/Role" in page
    assert 'id="request-form"' not in page  # carol may ask nowhere else, so there is no form to fill in

    # The account's default role for federated people is enough.
    world.prod.federated_role_arn = PROD_ROLE
    world.prod.save(update_fields=["federated_role_arn"])
    page = client.get("/requests/new/").content.decode()
    assert "no IAM principal" not in page and 'id="request-form"' in page


def test_an_account_without_a_principal_is_disabled_in_the_picker_while_others_stay_open(
    world: World, client: Client, settings: Any
) -> None:
    settings.PASSPORT_IAM_CHECK = True
    groups = ["passport:111111111111:admin", "passport:222222222222:admin"]
    staging_role = "arn:aws:iam::222222222222:role/CustomerOperators"
    staging_provider = "arn:aws:iam::222222222222:saml-provider/CustomerIdP"
    sign_in(client, "customer", CUSTOMER, carol_with([f"{staging_role},{staging_provider}"], groups))
    page = client.get("/requests/new/").content.decode()
    assert 'id="request-form"' in page
    assert "You have no IAM principal on Acme Production (111111111111)" in page
    assert f'value="{world.prod.pk}"  disabled' in page or f'value="{world.prod.pk}" disabled' in page
    assert f'value="{world.staging.pk}" selected' in page


def test_the_default_role_is_only_for_members_of_the_account(world: World) -> None:
    """A person from an identity provider whose group for the account was dropped (no membership)
    has no principal there: the default role is not asked about for them."""
    world.prod.federated_role_arn = PROD_ROLE
    world.prod.save(update_fields=["federated_role_arn"])
    SamlIdentity.objects.create(user=world.outsider, identity_store="customer", name_id="m@x.test", idp_slug="c")
    assert principal_arn_for(user=world.outsider, account=world.prod) == ""
    # A member without an ARN of their own falls back to it, whatever their role (the role is asked elsewhere).
    membership = make_membership(world.outsider, world.prod, "observer")
    Membership.objects.filter(pk=membership.pk).update(principal_arn="")
    assert principal_arn_for(user=world.outsider, account=world.prod) == PROD_ROLE
    # Their own ARN comes first; a member of no identity provider has no default.
    Membership.objects.filter(pk=membership.pk).update(principal_arn="arn:aws:iam::111111111111:role/Own")
    assert principal_arn_for(user=world.outsider, account=world.prod) == "arn:aws:iam::111111111111:role/Own"
    Membership.objects.filter(user=world.observer, account=world.prod).update(principal_arn="")
    assert principal_arn_for(user=world.observer, account=world.prod) == ""


def test_the_default_role_must_be_in_its_account_and_not_the_portals_own(world: World) -> None:
    from django.core.exceptions import ValidationError

    world.prod.federated_role_arn = "arn:aws:iam::222222222222:role/CustomerOperators"
    with pytest.raises(ValidationError, match="must be in this account"):
        world.prod.full_clean()
    world.prod.federated_role_arn = "arn:aws:iam::111111111111:role/PassportPortal"
    with pytest.raises(ValidationError, match="the role Passport itself assumes"):
        world.prod.full_clean()
