"""An identity provider withdrawn in the admin (disabled, deleted, renamed) ends what it vouched for:
the browser sessions it signed in, the CLI tokens they confirmed, the codes confirmed and not yet
collected, and the open terminals of the people it signs in (accounts.saml.withdrawal).

Through the real endpoints, with responses signed by the test IdP's key (tests.accounts.test_saml)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client

from accounts.models import ApiToken, SamlIdentityProvider, User
from audit.models import LogbookEntry
from terminal import services
from tests.accounts.test_saml import CAROL, CUSTOMER, idp_entry, sign_in, signed_in_user
from tests.conftest import World


@pytest.fixture(autouse=True)
def admin_idp(settings: Any, db: None) -> SamlIdentityProvider:
    settings.PASSPORT_SAML_IDPS = []
    return SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))


def _cli_sign_in(client: Client) -> str:
    started = Client().post("/api/cli/device/", {"client_name": "laptop"}, content_type="application/json").json()
    assert client.post("/cli/device/", {"user_code": started["user_code"]}).status_code == 200
    issued = Client().post("/api/cli/token/", {"device_code": started["device_code"]}, content_type="application/json")
    assert issued.status_code == 200, issued.content
    return str(issued.json()["access_token"])


def _confirmed_code(client: Client) -> str:
    started = Client().post("/api/cli/device/", {"client_name": "later"}, content_type="application/json").json()
    assert client.post("/cli/device/", {"user_code": started["user_code"]}).status_code == 200
    return str(started["device_code"])


def _exchange(device_code: str) -> Any:
    return Client().post("/api/cli/token/", {"device_code": device_code}, content_type="application/json")


def _withdraw(idp: SamlIdentityProvider, how: str) -> None:
    if how == "disabled":
        idp.enabled = False
        idp.save()
    elif how == "renamed":
        idp.slug = "customer-new"
        idp.save()
    else:
        idp.delete()


def _carol_signed_in() -> tuple[Client, User]:
    client = Client()
    response, _ = sign_in(client, "customer", CUSTOMER, CAROL)
    assert response.status_code == 302
    carol = signed_in_user(client)
    assert carol is not None
    return client, carol


@pytest.mark.parametrize("how", ["disabled", "deleted", "renamed"])
def test_a_withdrawn_idp_ends_its_sessions_tokens_and_confirmed_codes(
    world: World, admin_idp: SamlIdentityProvider, how: str, django_capture_on_commit_callbacks: Any
) -> None:
    client, carol = _carol_signed_in()
    token = _cli_sign_in(client)
    device_code = _confirmed_code(client)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert ApiToken.objects.get(user=carol).idp_slug == "customer"
    assert client.get("/requests/").status_code == 200
    assert Client().get("/api/requests/", **bearer).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        _withdraw(admin_idp, how)

    assert Client().get("/accounts/saml/customer/login/").status_code == 404
    assert client.get("/requests/").status_code == 302  # signed out: to the sign-in page
    assert client.get("/requests/").status_code == 302
    assert Client().get("/api/requests/", **bearer).status_code == 401
    assert _exchange(device_code).status_code == 400
    assert not ApiToken.objects.filter(user=carol).exists()

    entries = LogbookEntry.objects.filter(actor=carol).order_by("id")
    signed_out = [entry.detail for entry in entries.filter(action="auth.signed_out")]
    assert len(signed_out) == 1  # once, at the first request after
    assert signed_out[0]["reason"] == "idp_disabled" and signed_out[0]["idp"] == "customer"
    revoked = LogbookEntry.objects.get(action="cli.token_revoked")
    assert revoked.actor is None and revoked.detail["reason"] == "idp_disabled"
    assert revoked.detail["user"] == carol.username
    voided = LogbookEntry.objects.get(action="cli.device_codes_voided")
    assert voided.detail == {"user": carol.username, "count": 1, "reason": "idp_disabled"}


def test_a_local_sign_in_and_another_change_of_the_idp_keep_their_tokens(
    world: World, admin_idp: SamlIdentityProvider
) -> None:
    carol_client, _ = _carol_signed_in()
    carol_token = _cli_sign_in(carol_client)
    local = Client()
    local.force_login(world.requester)
    local_token = _cli_sign_in(local)
    assert ApiToken.objects.get(user=world.requester).idp_slug == ""

    admin_idp.name = "Customer single sign-on"  # a change that withdraws nothing
    admin_idp.save()
    assert Client().get("/api/requests/", HTTP_AUTHORIZATION=f"Bearer {carol_token}").status_code == 200

    admin_idp.enabled = False
    admin_idp.save()
    assert Client().get("/api/requests/", HTTP_AUTHORIZATION=f"Bearer {local_token}").status_code == 200
    assert local.get("/requests/").status_code == 200
    # Enabling it again revives nothing, and disabling it again revokes nothing more.
    admin_idp.enabled = True
    admin_idp.save()
    assert Client().get("/api/requests/", HTTP_AUTHORIZATION=f"Bearer {carol_token}").status_code == 401
    admin_idp.enabled = False
    admin_idp.save()
    assert LogbookEntry.objects.filter(action="cli.token_revoked").count() == 1


def test_a_token_from_before_the_idp_was_kept_is_revoked_when_only_that_idp_signs_its_person_in(
    world: World, admin_idp: SamlIdentityProvider
) -> None:
    """``idp_slug`` None: issued before Passport kept it. Carol (a SAML identity here only, no usable
    password) can have got hers only through this IdP; Alice, with a password of her own, keeps hers."""
    carol_client, _ = _carol_signed_in()
    carol_token = _cli_sign_in(carol_client)
    local = Client()
    local.force_login(world.requester)
    alice_token = _cli_sign_in(local)
    ApiToken.objects.update(idp_slug=None)

    admin_idp.delete()

    assert Client().get("/api/requests/", HTTP_AUTHORIZATION=f"Bearer {carol_token}").status_code == 401
    assert Client().get("/api/requests/", HTTP_AUTHORIZATION=f"Bearer {alice_token}").status_code == 200


def test_an_idp_taken_out_of_the_settings_is_refused_at_the_next_use(world: World, settings: Any) -> None:
    """No save to hear: the session, the token and the confirmed code are refused as they are used."""
    SamlIdentityProvider.objects.all().delete()
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", CUSTOMER, "customer")]
    client, carol = _carol_signed_in()
    token = _cli_sign_in(client)
    device_code = _confirmed_code(client)

    settings.PASSPORT_SAML_IDPS = []

    assert Client().get("/api/requests/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert _exchange(device_code).status_code == 400
    assert client.get("/requests/").status_code == 302
    assert LogbookEntry.objects.get(action="auth.signed_out", actor=carol).detail["reason"] == "idp_disabled"


def test_a_withdrawn_idp_closes_the_terminals_of_the_people_it_signs_in_at_once(
    world: World, admin_idp: SamlIdentityProvider, django_capture_on_commit_callbacks: Any
) -> None:
    client, carol = _carol_signed_in()
    key = client.session.session_key
    assert services.terminal_session_signed_in(session_key=key, user_id=carol.pk)
    layer = get_channel_layer()

    async def listen() -> str:
        channel = await layer.new_channel()
        await layer.group_add(services.user_group(carol.pk), channel)
        return str(channel)

    mine = async_to_sync(listen)()

    async def received() -> dict[str, Any]:
        try:
            return dict(await asyncio.wait_for(layer.receive(mine), 5))
        finally:
            await layer.group_discard(services.user_group(carol.pk), mine)

    with django_capture_on_commit_callbacks(execute=True):
        admin_idp.enabled = False
        admin_idp.save()

    assert async_to_sync(received)() == {"type": "terminal.close", "reason": services.IDP_WITHDRAWN_MESSAGE}
    # And the periodic sign-in check of one the message missed sees the session over too.
    assert not services.terminal_session_signed_in(session_key=key, user_id=carol.pk)
