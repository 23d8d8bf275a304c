"""A signed-in person's refusals (requests_app.services.lifecycle._deny) go through the Logbook's
aggregation (audit.refusals): the same refusal again and again is one entry at once and a count in
the window's summary, so a loop does not grow the Logbook (nor take its head lock) per call, and
nothing is lost; a different refusal, or another person's, is written at once and names them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from audit.refusals import logbook_refusals_flush
from core.errors import RequestRuleError
from requests_app import services
from tests.conftest import World

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # just after a refusal window (300 s) starts


@pytest.fixture(autouse=True)
def frozen(settings: Any, time_machine: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    time_machine.move_to(T0, tick=False)


def test_an_observer_asking_sixty_times_is_one_entry_and_a_count(world: World, time_machine: Any) -> None:
    client = APIClient()
    client.force_authenticate(world.observer)
    payload = {"account": world.prod.account_id, "instances": [world.web.instance_id], "reason": "x"}
    before = LogbookEntry.objects.count()
    codes = [client.post("/api/requests/", payload, format="json").status_code for _ in range(60)]
    assert codes == [400] * 60
    assert LogbookEntry.objects.count() == before + 1
    first = LogbookEntry.objects.get(action="request.create_denied")
    assert first.actor == world.observer
    assert first.account_id == world.prod.account_id and first.instance_id_list == [world.web.instance_id]
    assert "account" in first.detail["denied"]
    key = first.detail["refusal_key"]
    # The window closes; its summary counts the other 59 under the first entry's key.
    time_machine.move_to(T0 + timedelta(minutes=6), tick=False)
    assert logbook_refusals_flush() == 1
    summary = LogbookEntry.objects.get(action="request.create_denied", detail__summary=True)
    assert summary.detail["total"] == 60
    assert summary.detail["counts"] == [{"source": f"user:{world.observer.pk}", "reason": key, "count": 60}]
    assert logbook_verify().intact


def test_a_different_refusal_or_another_person_is_written_at_once(world: World) -> None:
    def ask(user: Any, instance: Any) -> None:
        with pytest.raises(RequestRuleError):
            services.access_request_create(requester=user, account=world.prod, instances=[instance], reason="x")

    ask(world.observer, world.web)
    ask(world.observer, world.web)  # the same again: counted
    ask(world.observer, world.db)  # another instance: another refusal
    ask(world.outsider, world.web)  # another person
    entries = LogbookEntry.objects.filter(action="request.create_denied").order_by("pk")
    assert [(entry.actor, entry.instance_id_list) for entry in entries] == [
        (world.observer, [world.web.instance_id]),
        (world.observer, [world.db.instance_id]),
        (world.outsider, [world.web.instance_id]),
    ]
    assert len({entry.detail["refusal_key"] for entry in entries}) == 3


def test_many_people_refused_in_one_window_are_each_named(world: World, settings: Any) -> None:
    # The cap on sources is for clients nobody signed in; a person's refusal is never folded into "other sources".
    settings.PASSPORT_REFUSAL_SOURCES_PER_WINDOW = 1
    for user in (world.observer, world.outsider, world.auditor):
        with pytest.raises(RequestRuleError):
            services.access_request_create(requester=user, account=world.prod, instances=[world.web], reason="x")
    actors = list(LogbookEntry.objects.filter(action="request.create_denied").values_list("actor_label", flat=True))
    assert sorted(actors) == sorted([world.observer.username, world.outsider.username, world.auditor.username])


def test_a_refused_decision_repeated_is_one_entry_too(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="deploy logs"
    )
    for _ in range(5):
        with pytest.raises(RequestRuleError):
            services.access_request_approve(access_request=access_request, approver=world.member, note="")
    denied = LogbookEntry.objects.get(action="request.approve_denied", request_id=access_request.pk)
    assert denied.actor == world.member
