"""An identity provider withdrawn in the admin (disabled, deleted, renamed) ends what it vouched for:
the browser sessions it signed in, the CLI tokens they confirmed, the codes confirmed and not yet
collected, and the open terminals of the people it signs in (accounts.saml.withdrawal).

Through the real endpoints, with responses signed by the test IdP's key (tests.accounts.test_saml)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client

from accounts.models import ApiToken, SamlIdentity, SamlIdentityProvider, User
from accounts.saml.config import certificate_body
from audit.models import LogbookEntry
from devcloud.idp import TestIdentityProvider
from terminal import services
from tests.accounts.test_saml import CAROL, CUSTOMER, idp_entry, sign_in, signed_in_user
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.conftest import World

# The customer's IdP after its signing key leaked: the same entity, a new key and certificate.
CUSTOMER_NEW_KEY = TestIdentityProvider(CUSTOMER.entity_id)


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


def _carol_signed_in(idp: TestIdentityProvider = CUSTOMER) -> tuple[Client, User]:
    client = Client()
    response, _ = sign_in(client, "customer", idp, CAROL)
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


@pytest.mark.parametrize("how", ["disabled", "deleted", "renamed"])
def test_a_token_from_before_the_idp_was_kept_is_revoked_when_only_that_idp_signs_its_person_in(
    world: World, admin_idp: SamlIdentityProvider, how: str
) -> None:
    """``idp_slug`` None: issued before Passport kept it. Carol (a SAML identity here only, no usable
    password) can have got hers only through this IdP; Alice, with a password of her own, keeps hers."""
    carol_client, _ = _carol_signed_in()
    carol_token = _cli_sign_in(carol_client)
    local = Client()
    local.force_login(world.requester)
    alice_token = _cli_sign_in(local)
    ApiToken.objects.update(idp_slug=None)

    _withdraw(admin_idp, how)  # renamed: found by its old slug before its links follow the new one

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


@pytest.mark.parametrize("how", ["disabled", "deleted", "renamed"])
def test_a_withdrawn_idp_closes_the_terminals_of_the_people_it_signs_in_at_once(
    world: World, admin_idp: SamlIdentityProvider, how: str, django_capture_on_commit_callbacks: Any
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
        _withdraw(admin_idp, how)

    assert async_to_sync(received)() == {"type": "terminal.close", "reason": services.IDP_WITHDRAWN_MESSAGE}
    # And the periodic sign-in check of one the message missed sees the session over too.
    assert not services.terminal_session_signed_in(session_key=key, user_id=carol.pk)


def _over_as_replaced(client: Client, session_key: str | None, carol: User) -> None:
    """Carol's session is over, for the terminal and the pages, and the Logbook says its IdP was replaced."""
    assert not services.terminal_session_signed_in(session_key=session_key, user_id=carol.pk)
    assert client.get("/requests/").status_code == 302
    signed_out = LogbookEntry.objects.get(action="auth.signed_out", actor=carol).detail
    assert (signed_out["reason"], signed_out["idp"]) == ("idp_replaced", "customer")


def _toggle(admin_idp: SamlIdentityProvider, how: str, admin: Client | None) -> None:
    """Disable the IdP and enable it again, by a save, a queryset's update() or the admin's form."""
    for enabled in (False, True):
        if how == "save":
            admin_idp.refresh_from_db()
            admin_idp.enabled = enabled
            admin_idp.save()
        elif how == "update":
            assert SamlIdentityProvider.objects.filter(pk=admin_idp.pk).update(enabled=enabled) == 1
        else:
            assert admin is not None
            url = f"/admin/accounts/samlidentityprovider/{admin_idp.pk}/change/"
            post_ok(admin, url, form_data(admin, url, enabled="on" if enabled else None))
    admin_idp.refresh_from_db()
    assert admin_idp.enabled


@pytest.mark.parametrize("how", ["save", "update", "admin"])
def test_an_idp_disabled_then_enabled_again_does_not_bring_back_its_unused_sessions(
    world: World, admin_idp: SamlIdentityProvider, how: str, django_capture_on_commit_callbacks: Any
) -> None:
    admin = superuser_client()[0] if how == "admin" else None
    client, carol = _carol_signed_in()
    key = client.session.session_key
    assert client.get("/requests/").status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        _toggle(admin_idp, how, admin)  # the session is not used while the IdP is disabled

    _over_as_replaced(client, key, carol)
    # A sign-in through it after it came back lives as any other.
    again, _ = _carol_signed_in()
    assert again.get("/requests/").status_code == 200
    # On the record: the IdP's trust generation moved on with the change that disabled it.
    action = "admin.changed" if how == "admin" else "saml_idp.changed"
    generations = [
        entry.detail["changes"]["trust_generation"]
        for entry in LogbookEntry.objects.filter(action=action).order_by("id")
        if "trust_generation" in entry.detail.get("changes", {}) and not entry.detail.get("created")
    ]
    assert generations == [{"before": 0, "after": 1}]


def test_a_certificate_replaced_ends_the_sessions_the_old_one_signed_in(
    world: World, admin_idp: SamlIdentityProvider
) -> None:
    client, carol = _carol_signed_in()
    key = client.session.session_key
    token = _cli_sign_in(client)
    bystander = Client()
    bystander.force_login(world.requester)

    admin_idp.x509cert = CUSTOMER_NEW_KEY.cert_pem  # the key leaked: another one, never disabled
    admin_idp.save()

    assert not services.terminal_session_signed_in(session_key=key, user_id=carol.pk)
    assert client.get("/requests/").status_code == 302
    assert LogbookEntry.objects.get(action="auth.signed_out", actor=carol).detail["reason"] == "idp_replaced"
    assert bystander.get("/requests/").status_code == 200
    # The CLI token that session confirmed goes with it.
    assert Client().get("/api/requests/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert LogbookEntry.objects.get(action="cli.token_revoked").detail["reason"] == "idp_replaced"
    # A name or the button's text changed ends nothing.
    again, _ = _carol_signed_in(CUSTOMER_NEW_KEY)
    admin_idp.name = "Customer single sign-on"
    admin_idp.save()
    assert again.get("/requests/").status_code == 200
    # Nor the same certificate pasted again as its base64 body alone, on one line.
    admin_idp.x509cert = "".join(CUSTOMER_NEW_KEY.cert_pem.strip().splitlines()[1:-1])
    admin_idp.save()
    assert again.get("/requests/").status_code == 200
    assert SamlIdentityProvider.objects.get(pk=admin_idp.pk).trust_generation == 1


def test_an_idp_taken_out_of_the_settings_and_put_back_with_another_certificate_keeps_its_sessions_out(
    world: World, settings: Any
) -> None:
    SamlIdentityProvider.objects.all().delete()
    settings.PASSPORT_SAML_IDPS = [idp_entry("customer", CUSTOMER, "customer")]
    client, carol = _carol_signed_in()
    key = client.session.session_key

    settings.PASSPORT_SAML_IDPS = []  # taken out (the session is not used meanwhile), put back with a new key
    put_back = {**idp_entry("customer", CUSTOMER, "customer"), "x509cert": CUSTOMER_NEW_KEY.cert_pem}
    settings.PASSPORT_SAML_IDPS = [put_back]

    assert not services.terminal_session_signed_in(session_key=key, user_id=carol.pk)
    assert client.get("/requests/").status_code == 302
    assert LogbookEntry.objects.get(action="auth.signed_out", actor=carol).detail["reason"] == "idp_replaced"


ABSENT = object()


@pytest.mark.parametrize(
    "trust",
    [ABSENT, None, 0, ["x"], "", "0" * 64, "a\r\nb\u202e'\"; rm -rf / $(id)\x00"],
    ids=["absent", "none", "number", "list", "empty", "another", "hostile"],
)
def test_a_saml_session_that_names_no_trust_or_another_is_over(
    world: World, admin_idp: SamlIdentityProvider, trust: Any
) -> None:
    """Signed in before sessions kept which trust signed them in, or naming another: nothing says the
    IdP is the one that signed it in."""
    client, carol = _carol_signed_in()
    session = client.session
    info = {key: value for key, value in session["saml"].items() if key != "trust"}
    session["saml"] = info if trust is ABSENT else {**info, "trust": trust}
    session.save()

    _over_as_replaced(client, session.session_key, carol)


def test_a_save_of_an_idp_read_before_it_was_disabled_does_not_bring_its_sessions_back(
    world: World, admin_idp: SamlIdentityProvider
) -> None:
    stale = SamlIdentityProvider.objects.get(pk=admin_idp.pk)  # read at generation 0
    client, _ = _carol_signed_in()
    _toggle(admin_idp, "update", None)

    stale.name = "Customer single sign-on"
    stale.save()

    assert SamlIdentityProvider.objects.get(pk=admin_idp.pk).trust_generation == 1
    assert client.get("/requests/").status_code == 302


@pytest.mark.parametrize("how", ["renamed", "renamed by update", "deleted"])
def test_an_idp_withdrawn_then_back_as_it_was_does_not_bring_back_its_unused_sessions(
    world: World, admin_idp: SamlIdentityProvider, how: str, django_capture_on_commit_callbacks: Any
) -> None:
    """Renamed away and back, or deleted and made again with the same entry: the sessions it signed
    in before are over all the same (the README: "This is for good")."""
    client, carol = _carol_signed_in()
    key = client.session.session_key
    assert client.get("/requests/").status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        if how == "deleted":
            admin_idp.delete()
            assert not services.terminal_session_signed_in(session_key=key, user_id=carol.pk)
            SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
        else:
            for slug in ("customer-away", "customer"):
                if how == "renamed":
                    admin_idp.refresh_from_db()
                    admin_idp.slug = slug
                    admin_idp.save()
                else:
                    assert SamlIdentityProvider.objects.filter(pk=admin_idp.pk).update(slug=slug) == 1
                if slug != "customer":  # away: refused meanwhile
                    assert not services.terminal_session_signed_in(session_key=key, user_id=carol.pk)

    # Not used while it was away, and still over now that it is back.
    _over_as_replaced(client, key, carol)
    if how == "deleted":
        # Made again, it is another IdP to carol's link too, until a site admin gives it the link
        # (tests/accounts/test_saml_link_idp.py); here, as if moved to a slug no IdP had.
        refused = Client()
        assert sign_in(refused, "customer", CUSTOMER, CAROL)[0].status_code == 403
        SamlIdentity.objects.filter(user=carol).update(idp_entity_id=None)
    # A sign-in through it now lives as any other.
    again, _ = _carol_signed_in()
    assert again.get("/requests/").status_code == 200


def test_a_row_from_before_its_nonce_was_kept_keeps_the_trust_its_sessions_recorded(
    world: World, admin_idp: SamlIdentityProvider
) -> None:
    """The nonce's migration leaves the rows it finds without one: their sessions stay signed in."""
    client, _ = _carol_signed_in()
    SamlIdentityProvider.objects.filter(pk=admin_idp.pk).update_unrecorded(trust_nonce="")
    session = client.session
    info = session["saml"]
    # What the trust of this row was before the nonce was part of it.
    before = [CUSTOMER.entity_id, certificate_body(admin_idp.x509cert), "", 0]
    session["saml"] = {**info, "trust": hashlib.sha256(json.dumps(before).encode()).hexdigest()}
    session.save()

    assert client.get("/requests/").status_code == 200
    # A row made now has a nonce of its own, another than any other row's.
    other = SamlIdentityProvider.objects.create(**idp_entry("customer-two", CUSTOMER, "customer"))
    assert len(other.trust_nonce) == 32 and other.trust_nonce != admin_idp.trust_nonce
