"""The CA page and API: public keys for every signed-in person, nothing for anyone else."""

from __future__ import annotations

import html
import secrets
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.authentication import hash_token
from accounts.models import ApiToken
from sshca.models import CaKey
from sshca.services import ca_authorized_keys_lines, ca_key_ensure, ca_retire, ca_rotate, ca_trusted_public_keys
from tests.conftest import World
from tests.sshca.conftest import ALICE_PRINCIPAL

pytestmark = pytest.mark.django_db

URLS = ["/ca/", "/api/ca/keys/", "/api/ca/keys.txt"]


def test_anonymous_is_sent_to_sign_in_from_the_page(client: Client) -> None:
    response = client.get("/ca/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not CaKey.objects.exists()  # nothing created for an anonymous visitor


@pytest.mark.parametrize("url", ["/api/ca/keys/", "/api/ca/keys.txt"])
def test_anonymous_is_refused_by_the_api(client: Client, url: str) -> None:
    response = client.get(url)

    assert response.status_code in (401, 403)
    assert not CaKey.objects.exists()


def test_any_signed_in_person_sees_the_page(client: Client, world: World) -> None:
    client.force_login(world.outsider)  # no membership anywhere: the keys are still theirs to see

    response = client.get("/ca/")

    assert response.status_code == 200
    assert response.context["nav"] == "ca"
    body = response.content.decode()
    for key in CaKey.objects.all():
        assert key.fingerprint in body
        assert key.public_key in body
    shown = html.unescape(body)
    assert 'cert-authority,principals="grant-00000000-0000-0000-0000-000000000000",permitopen="localhost:22",' in shown
    assert ',permitlisten="localhost:1" ssh-ed25519 ' in shown


def test_the_page_shows_retired_keys_apart(client: Client, world: World) -> None:
    old = ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="ed25519")
    ca_retire(fingerprint=old.fingerprint)
    client.force_login(world.requester)

    body = client.get("/ca/").content.decode()

    assert old.fingerprint in body  # listed, as retired
    assert body.count(old.public_key) == 0  # but offered to no server


def test_the_key_list_api(client: Client, world: World) -> None:
    old = ca_key_ensure(key_type="ed25519")
    new = ca_rotate(key_type="ed25519")
    client.force_login(world.requester)

    rows = client.get("/api/ca/keys/").json()

    rsa_key = CaKey.objects.get(key_type="rsa")
    assert [(row["key_type"], row["state"], row["fingerprint"]) for row in rows] == [
        ("ed25519", "active", new.fingerprint),
        ("rsa", "active", rsa_key.fingerprint),
        ("ed25519", "trusted", old.fingerprint),
    ]
    assert rows[0]["public_key"] == new.public_key
    assert set(rows[0]) == {"key_type", "public_key", "fingerprint", "state", "created_at"}
    assert all("private" not in str(row) for row in rows)


def test_the_key_list_api_takes_a_bearer_token(client: Client, world: World) -> None:
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=world.requester, name="cli", token_hash=hash_token(raw), expires_at=timezone.now() + timedelta(days=1)
    )

    response = client.get("/api/ca/keys/", HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert response.status_code == 200
    assert len(response.json()) == 2


def test_the_key_list_costs_the_same_with_more_keys(
    client: Client, world: World, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    client.force_login(world.requester)
    client.get("/api/ca/keys/")  # first use: creates the keys

    def rotate_and_retire() -> None:
        old = CaKey.objects.get(key_type="ed25519", state="active")
        ca_rotate(key_type="ed25519")
        ca_retire(fingerprint=old.fingerprint)

    rotate_and_retire()
    # session, person, the two first-use checks, the list
    with django_assert_num_queries(5) as few:
        client.get("/api/ca/keys/")
    for _ in range(3):
        rotate_and_retire()
    with django_assert_num_queries(len(few.captured_queries)):
        assert len(client.get("/api/ca/keys/").json()) == 6


def test_the_text_endpoint_is_a_trusted_user_ca_keys_file(client: Client, world: World) -> None:
    ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="ed25519")
    client.force_login(world.requester)

    response = client.get("/api/ca/keys.txt")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode().splitlines() == ca_trusted_public_keys()
    assert len(ca_trusted_public_keys()) == 3


def test_the_text_endpoint_writes_authorized_keys_lines_for_a_principal(client: Client, world: World) -> None:
    client.force_login(world.requester)

    response = client.get("/api/ca/keys.txt", {"principal": ALICE_PRINCIPAL})

    assert response.status_code == 200
    assert response.content.decode().splitlines() == ca_authorized_keys_lines(principal=ALICE_PRINCIPAL)
    first = f'cert-authority,principals="{ALICE_PRINCIPAL}",permitopen="localhost:22",'
    assert response.content.decode().startswith(first)


@pytest.mark.parametrize("principal", ["root", 'rs-abcdefgh" ssh-ed25519 AAAA', "rs-abcdefgh\nx"])
def test_the_text_endpoint_refuses_a_non_passport_principal(client: Client, world: World, principal: str) -> None:
    client.force_login(world.requester)

    response = client.get("/api/ca/keys.txt", {"principal": principal})

    assert response.status_code == 400
    assert "cert-authority" not in response.content.decode()


def test_the_schema_describes_the_ca_endpoints(client: Client, world: World) -> None:
    client.force_login(world.requester)

    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    assert "/api/ca/keys/" in schema["paths"]
    assert "/api/ca/keys.txt" in schema["paths"]
