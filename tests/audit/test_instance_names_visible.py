"""An instance's Name comes from an EC2 tag anyone with ec2:CreateTags writes. It is kept as it
came, so each page shows it with its invisible and reordering characters as escapes: a bidi
override in a Name must not reorder the instance ids, names and details drawn after it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.services import logbook_append
from requests_app.models import Instance
from tests.audit.conftest import signed_in
from tests.conftest import World

pytestmark = pytest.mark.django_db

HOSTILE = "web-1\u202e\u2066\u200b"  # right-to-left override, left-to-right isolate, zero-width space


def _row(page: str, entry_pk: int) -> str:
    return page.split(f'<tr id="entry-{entry_pk}">', 1)[1].split("</tr>", 1)[0]


def test_a_name_tag_with_a_bidi_override_cannot_reorder_a_logbook_row(world: World) -> None:
    Instance.objects.filter(pk=world.web.pk).update(name=HOSTILE)
    entry = logbook_append(action="grant.ready", actor=None, account=world.prod, request_id=7,
                           instance_ids=[world.web.instance_id, world.db.instance_id])  # fmt: skip
    row = _row(signed_in(world.auditor).get("/logbook/").content.decode(), entry.pk)
    assert "web-1\\u202e\\u2066\\u200b" in row
    assert not any(char in row for char in "\u202e\u2066\u200b")


def test_pages_that_name_an_instance_show_its_hidden_characters(world: World) -> None:
    Instance.objects.filter(pk=world.web.pk).update(name=HOSTILE)
    page = signed_in(world.approver).get(reverse("requests:inventory")).content.decode()
    assert "web-1\\u202e\\u2066\\u200b" in page
    assert not any(char in page for char in "\u202e\u2066\u200b")
