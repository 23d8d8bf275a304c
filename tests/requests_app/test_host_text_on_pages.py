"""Text written by a host or a cloud API (a script's stderr, reconciliation output, the OS name the
agent reports, a sweep's error) is shown to approvers and admins with every hidden character as an
escape: root on an instance must not reorder or hide what they read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from requests_app.models import Grant, Instance, SweepFailure
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db

RLO = "\u202e"
# Reordered by the override and followed by a terminal's clipboard-write escape.
HOSTILE = f"useradd: {RLO}gnp.exe \x1b]52;c;ZXZpbA==\x07"
SHOWN = "useradd: \\u202egnp.exe \\x1b]52;c;ZXZpbA==\\x07"


def _failure(kind: str, key: str) -> None:
    now = timezone.now()
    SweepFailure.objects.create(
        kind=kind,
        key=key,
        first_failed_at=now,
        last_failed_at=now,
        next_attempt_at=now + timedelta(minutes=5),
        last_error=HOSTILE,
    )


def test_the_request_page_shows_a_hosts_error_and_the_expiry_sweeps_error_made_visible(
    world: World, client: Client
) -> None:
    grant = make_active_grant(world)
    Grant.objects.filter(pk=grant.pk).update(last_error=f"Run Command c-1 ended Failed (exit 1): {HOSTILE}")
    _failure(SweepFailure.Kind.EXPIRE, str(grant.request_id))
    client.force_login(world.approver)
    page = client.get(reverse("requests:detail", args=[grant.request_id])).content.decode()
    assert page.count(SHOWN) == 2
    assert RLO not in page and "\x1b" not in page


def test_the_inventory_shows_reconciliation_output_the_os_name_and_sync_errors_made_visible(
    world: World, client: Client
) -> None:
    Instance.objects.filter(pk=world.web.pk).update(
        reconcile_error=f"Run Command c-2 ended Failed (exit 1): {HOSTILE}", platform_name=f"Ubuntu{RLO}\x1b[8m"
    )
    _failure(SweepFailure.Kind.INVENTORY, f"{world.prod.pk}:us-east-1")
    client.force_login(world.approver)
    page = client.get(reverse("requests:inventory")).content.decode()
    assert page.count(SHOWN) == 2
    assert "Ubuntu\\u202e\\x1b[8m" in page
    assert RLO not in page and "\x1b" not in page
