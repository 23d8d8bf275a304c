"""Two different people never get the same OS user, even when their masked ids collide.

The masked id (``core.usernames.masked_id``) has 40 bits: for N people the chance that some pair
collides is ~N^2/2^41 (10k people: 1 in 22,000; 100k: 1 in 220). The pair below was brute-forced
by the reviewer under ``KEY`` (12 s, ~1.2M ids): their derived names are equal. Each person's OS
username is stored once with a unique constraint (``requests_app.models.OsUsername``); the second
person of a clash is given another name (the derivation with a counter). Grants of the two on one
host then make two users, so B never logs in as A's uid, reads A's home, or changes A's sudo or
(on Windows) A's password or user.
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.test import override_settings

from accounts.models import User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from core.usernames import username_for
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, OsUsername, RequestStatus
from requests_app.services.provisioning import Outcome
from tests.conftest import World
from tests.factories import make_active_request, make_instance, make_membership, make_user
from tests.fakes.fleet import FakeFleet

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

KEY = "review-ca-username-key-" + "k" * 32
ALICE_ID, BOB_ID = 1168409, 1448071  # brute.py: rs-<same 8 letters> for both under KEY


def _pair(world: World) -> tuple[User, User]:
    alice = make_user("alice-collides", id=ALICE_ID)
    bob = make_user("bob-collides", id=BOB_ID)
    for person in (alice, bob):
        make_membership(person, world.prod, "admin")
    return alice, bob


def _grant_username(person: User, instance: Instance) -> str:
    access_request = services.access_request_create(
        requester=person, account=instance.account, instances=[instance], reason="patch"
    )
    return Grant.objects.get(request=access_request).username


@override_settings(PASSPORT_USERNAME_KEY=KEY)
def test_the_reviewers_pair_derives_one_name() -> None:
    """The derivation alone still collides: what keeps the two apart is the stored name."""
    assert username_for(user_id=ALICE_ID, domain_controller=False) == username_for(
        user_id=BOB_ID, domain_controller=False
    )


@override_settings(PASSPORT_USERNAME_KEY=KEY)
@pytest.mark.parametrize("platform", ["linux", "windows"])
def test_two_people_never_share_an_os_username(world: World, platform: str) -> None:
    alice, bob = _pair(world)
    instance = world.windows if platform == "windows" else world.web

    alices = _grant_username(alice, instance)
    bobs = _grant_username(bob, instance)

    assert alices == username_for(user_id=ALICE_ID, domain_controller=False)  # the first keeps today's name
    assert bobs != alices
    assert bobs.startswith("rs-") and len(bobs) == len(alices)
    # Each keeps the name it was given.
    assert _grant_username(bob, world.db) == bobs
    assert _grant_username(alice, world.db) == alices
    assert LogbookEntry.objects.filter(action="os_username.assigned", detail__username=bobs).exists()


@override_settings(PASSPORT_USERNAME_KEY=KEY)
def test_the_second_person_of_a_clash_gets_another_name_on_a_domain_controller(world: World) -> None:
    alice, bob = _pair(world)
    dc = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    alices = _grant_username(alice, dc)
    bobs = _grant_username(bob, dc)
    assert alices.rsplit("-", 1)[0] != bobs.rsplit("-", 1)[0]


# --- two people who already had one name (before names were stored) --------------------------------


def _before_names_were_stored(bobs: AccessRequest, name: str) -> None:
    """What a release before this one made of the pair: Bob's grants under Alice's derived name, and
    no name stored for anyone; then migration 0026 runs."""
    Grant.objects.filter(request=bobs).update(username=name)
    OsUsername.objects.all().delete()
    importlib.import_module("requests_app.migrations.0026_os_username").names_of_people_with_grants(apps, None)


@override_settings(PASSPORT_USERNAME_KEY=KEY)
def test_the_migration_keeps_a_live_clash_and_refuses_the_later_person_new_grants(
    world: World, fleet: FakeFleet
) -> None:
    alice, bob = _pair(world)
    make_active_request(alice, world.prod, world.web)
    name = Grant.objects.get(request__requester=alice).username
    bobs = services.access_request_create(requester=bob, account=world.prod, instances=[world.web], reason="patch")
    _before_names_were_stored(bobs, name)

    assert OsUsername.objects.get(user=alice).shares_with is None
    held = OsUsername.objects.get(user=bob)
    assert (held.name, held.shares_with_id) == (name, alice.pk)

    # New grants for Bob are refused while his grant under the shared name is on its way.
    with pytest.raises(RequestRuleError) as refused:
        services.access_request_create(requester=bob, account=world.prod, instances=[world.db], reason="patch")
    assert "also another person's" in str(refused.value.errors["__all__"])
    denied = LogbookEntry.objects.filter(action="request.create_denied", actor=bob).latest("id")
    assert "also another person's" in str(denied.detail["denied"])

    # His grant from before is never created on the host Alice's user is on: nothing is sent.
    services.access_request_approve(access_request=bobs, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=bobs.pk)
    assert services.grant_provision(grant_id=grant_id) == Outcome()
    assert fleet.calls == []
    grant = Grant.objects.get(pk=grant_id)
    assert "belongs to another person's access" in grant.last_error
    taken = LogbookEntry.objects.get(action="grant.username_taken", request_id=bobs.pk)
    assert taken.detail["username"] == name and taken.detail["step"] == "create"

    # Once nothing of his is left under it, his next request gives him a name of his own.
    Grant.objects.filter(request=bobs).update(status=GrantStatus.REMOVED)
    assert _grant_username(bob, world.db) not in (name, "")
    assert OsUsername.objects.get(user=bob).shares_with is None
    assert LogbookEntry.objects.filter(action="os_username.assigned", actor=bob, detail__shared_before=name).exists()


@override_settings(PASSPORT_USERNAME_KEY=KEY)
def test_the_migration_gives_the_later_person_a_new_name_when_neither_has_access_left(world: World) -> None:
    alice, bob = _pair(world)
    alices = make_active_request(alice, world.prod, world.web)
    name = Grant.objects.get(request=alices).username
    bobs = make_active_request(bob, world.prod, world.web)
    for ended in (alices, bobs):
        AccessRequest.objects.filter(pk=ended.pk).update(status=RequestStatus.COMPLETED)
        Grant.objects.filter(request=ended).update(status=GrantStatus.REMOVED)
    _before_names_were_stored(bobs, name)

    assert list(OsUsername.objects.values_list("user_id", "name")) == [(alice.pk, name)]
    assert _grant_username(bob, world.db) != name
    assert _grant_username(alice, world.db) == name


@override_settings(PASSPORT_USERNAME_KEY=KEY)
@pytest.mark.parametrize("platform", ["linux", "windows"])
def test_a_request_on_a_host_where_another_persons_grant_has_the_name_is_refused(world: World, platform: str) -> None:
    """Defence in depth: Alice's grant from before, under the name Bob was given, refuses Bob there."""
    alice, bob = _pair(world)
    instance = world.windows if platform == "windows" else world.web
    bobs_name = _grant_username(bob, world.db)
    alices = make_active_request(alice, world.prod, instance)
    Grant.objects.filter(request=alices).update(username=bobs_name)

    with pytest.raises(RequestRuleError) as refused:
        services.access_request_create(requester=bob, account=world.prod, instances=[instance], reason="patch")
    assert f"The OS username {bobs_name} on {instance.label} belongs to another person's access" in str(
        refused.value.errors["instances"]
    )
    assert LogbookEntry.objects.filter(action="request.create_denied", actor=bob).exists()


@override_settings(PASSPORT_USERNAME_KEY=KEY)
def test_a_windows_removal_never_deletes_another_persons_user(world: World, fleet: FakeFleet) -> None:
    """Bob's grant from before shares Alice's Windows user: its removal would delete her account."""
    alice, bob = _pair(world)
    make_active_request(alice, world.prod, world.windows)
    name = Grant.objects.get(request__requester=alice).username
    bobs = make_active_request(bob, world.prod, world.windows)
    _before_names_were_stored(bobs, name)

    services.access_request_complete(access_request=bobs, actor=bob)
    (grant,) = Grant.objects.filter(request=bobs)
    services.grant_deprovision(grant_id=grant.pk)
    assert fleet.calls == []  # no removal script ran: it would have deleted Alice's account
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REMOVING
    taken = LogbookEntry.objects.get(action="grant.username_taken", request_id=bobs.pk)
    assert taken.detail["step"] == "remove"
    assert Grant.objects.get(request__requester=alice).status == GrantStatus.READY
