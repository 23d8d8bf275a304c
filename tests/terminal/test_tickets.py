"""The terminal page's one-time tickets: a person reloading the page (or a script fetching it in a
loop) holds a few unused tickets per grant, not a row per load; expired tickets go in a periodic
sweep over an indexed column, not in a scan on every page load."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from terminal import services
from terminal.models import TerminalTicket
from tests.conftest import World
from tests.factories import make_active_request
from workers import tasks

pytestmark = pytest.mark.django_db


def test_a_person_holds_a_few_unused_tickets_per_grant_the_newest(world: World) -> None:
    grant = make_active_request(world.requester, world.prod, world.web).grants.get()
    tokens = [services.ticket_issue(user=world.requester, grant=grant) for _ in range(200)]
    unused = TerminalTicket.objects.filter(user=world.requester, grant=grant, used_at__isnull=True)
    assert unused.count() <= 5, f"{unused.count()} unused tickets of one person and grant"
    assert unused.count() == services.UNUSED_TICKETS_KEPT
    # The newest still open a terminal; an old one (a tab loaded long before) no longer does.
    assert services.ticket_consume(token=tokens[-1], user=world.requester, grant_id=grant.pk)
    assert not services.ticket_consume(token=tokens[0], user=world.requester, grant_id=grant.pk)
    # A used ticket is not counted against the person's unused ones, nor another person's.
    other = make_active_request(world.member, world.prod, world.web).grants.get()
    services.ticket_issue(user=world.member, grant=other)
    services.ticket_issue(user=world.requester, grant=grant)
    assert unused.count() == services.UNUSED_TICKETS_KEPT
    assert TerminalTicket.objects.filter(user=world.member).count() == 1
    assert TerminalTicket.objects.filter(user=world.requester, used_at__isnull=False).count() == 1


def test_expired_tickets_go_in_the_periodic_sweep_not_on_a_page_load(world: World, time_machine: Any) -> None:
    grant = make_active_request(world.requester, world.prod, world.web).grants.get()
    other = make_active_request(world.member, world.prod, world.web).grants.get()
    services.ticket_issue(user=world.member, grant=other)
    time_machine.move_to(timezone.now() + timedelta(hours=2))
    services.ticket_issue(user=world.requester, grant=grant)
    assert TerminalTicket.objects.count() == 2  # the page load deletes no one else's rows
    assert tasks.purge_terminal_tickets() == 1
    assert list(TerminalTicket.objects.values_list("user", flat=True)) == [world.requester.pk]
    assert settings.CELERY_BEAT_SCHEDULE["purge-terminal-tickets"]["task"] == "workers.tasks.purge_terminal_tickets"


def test_the_sweeps_filter_on_ticket_expiry_has_an_index() -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TerminalTicket._meta.db_table)
    assert any(found["index"] and found["columns"] == ["expires_at"] for found in constraints.values())


def test_pages_loaded_at_once_all_open_up_to_the_persons_cap_on_the_grant(world: World, settings: Any) -> None:
    # Tabs restored at once, or a script opening terminals in parallel: each page's ticket is issued
    # before the first WebSocket spends its own. Pruning the oldest unused ones must never take a
    # page the cap on open sessions would have let through (the cap refuses the rest, saying why).
    settings.PASSPORT_MAX_SESSIONS_PER_GRANT = 8
    grant = make_active_request(world.requester, world.prod, world.web).grants.get()
    tokens = [services.ticket_issue(user=world.requester, grant=grant) for _ in range(8)]
    opened = [services.ticket_consume(token=token, user=world.requester, grant_id=grant.pk) for token in tokens]
    assert opened == [True] * 8
    # Past the cap, the oldest unused still go: a reload loop holds a bounded number of rows.
    tokens = [services.ticket_issue(user=world.requester, grant=grant) for _ in range(20)]
    assert TerminalTicket.objects.filter(user=world.requester, used_at__isnull=True).count() == 8
    assert services.ticket_consume(token=tokens[-8], user=world.requester, grant_id=grant.pk)
    assert not services.ticket_consume(token=tokens[-9], user=world.requester, grant_id=grant.pk)
