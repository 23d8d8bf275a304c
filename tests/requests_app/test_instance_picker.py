"""The create form's instance picker keeps what is ticked across searches and says what is selected."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.conftest import World

pytestmark = pytest.mark.django_db


def _hidden_values(body: str) -> set[str]:
    return set(re.findall(r'<input type="hidden" name="instances" value="(\d+)">', body))


def test_a_search_keeps_a_ticked_instance_it_hides(client, world: World) -> None:
    client.force_login(world.requester)
    response = client.get(
        reverse("requests:instance_picker"), {"account": world.prod.pk, "q": "db", "instances": [world.web.pk]}
    )
    body = response.content.decode()
    assert world.web.instance_id not in body  # not a row: the search hides it
    assert _hidden_values(body) == {str(world.web.pk)}  # but it rides along
    assert 'data-selected="web-1"' in body


def test_the_summary_lists_every_selected_instance_and_a_remove_drops_one(client, world: World) -> None:
    client.force_login(world.requester)
    url = reverse("requests:instance_picker")
    both = client.get(url, {"account": world.prod.pk, "q": "db", "instances": [world.web.pk, world.db.pk]})
    body = both.content.decode()
    assert 'data-selected="web-1"' in body and 'data-selected="db-1"' in body
    assert f'id="instance-{world.db.pk}" name="instances" value="{world.db.pk}" checked' in body
    removed = client.get(
        url, {"account": world.prod.pk, "q": "db", "instances": [world.web.pk, world.db.pk], "remove": world.web.pk}
    ).content.decode()
    assert 'data-selected="web-1"' not in removed and not _hidden_values(removed)


def test_instances_of_another_account_are_not_selected(client, world: World) -> None:
    client.force_login(world.requester)
    body = client.get(
        reverse("requests:instance_picker"), {"account": world.prod.pk, "instances": [world.stage_web.pk]}
    ).content.decode()
    assert "stage-web-1" not in body and not _hidden_values(body)
    assert "Nothing selected yet." in body


def test_the_create_form_shows_the_selection_after_a_refusal(client, world: World) -> None:
    client.force_login(world.requester)
    body = client.post(
        reverse("requests:create"), {"account": world.prod.pk, "instances": [world.web.pk, "²", "9" * 30]}
    ).content.decode()
    assert 'data-selected="web-1"' in body
