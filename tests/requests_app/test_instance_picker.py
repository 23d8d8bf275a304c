"""The create form's instance picker keeps what is ticked across searches and says what is selected."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from requests_app.models import Instance
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


def _many_instances(world: World, count: int) -> list[Instance]:
    return Instance.objects.bulk_create(
        [
            Instance(
                account=world.prod,
                instance_id=f"i-{0xA000 + n:017x}",
                region="us-east-1",
                name=f"bulk-{n:04d}",
                ssm_managed=True,
                ping_status="Online",
                agent_version="3.3.1142.0",
            )
            for n in range(count)
        ]
    )


def _rows(body: str) -> list[str]:
    return re.findall(r'<input type="checkbox" id="instance-\d+" name="instances" value="(\d+)"', body)


def test_the_picker_shows_at_most_100_instances_and_asks_for_a_narrower_search(client, world: World) -> None:
    many = _many_instances(world, 400)
    client.force_login(world.requester)
    url = reverse("requests:instance_picker")
    beyond = many[-1]  # "bulk-0399": past the first 100 by name
    body = client.get(url, {"account": world.prod.pk, "instances": [beyond.pk]}).content.decode()
    assert len(_rows(body)) == 100
    assert "Showing the first 100 instances" in body and "refine your search" in body
    # A ticked instance past the cap is still selected: it rides along and is listed.
    assert str(beyond.pk) in _hidden_values(body) and 'data-selected="bulk-0399"' in body
    # A search that finds fewer shows them all, without the line.
    narrow = client.get(url, {"account": world.prod.pk, "q": "bulk-03"}).content.decode()
    assert len(_rows(narrow)) == 100 and "refine your search" not in narrow
    narrower = client.get(url, {"account": world.prod.pk, "q": "bulk-039"}).content.decode()
    assert len(_rows(narrower)) == 10 and "refine your search" not in narrower


def test_the_create_form_caps_its_picker_too(client, world: World) -> None:
    _many_instances(world, 150)
    client.force_login(world.requester)
    body = client.get(reverse("requests:create"), {"account": world.prod.pk}).content.decode()
    assert len(_rows(body)) == 100 and "refine your search" in body
