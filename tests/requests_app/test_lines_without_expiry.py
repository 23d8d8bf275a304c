"""A Linux grant whose host's sshd is older than OpenSSH 7.7 (or untold) gets its lines without sshd's
``expiry-time``, and the create says so on its output (``fleet.ssh_keys.LINES_WITHOUT_EXPIRY_TIME``).
The grant records it (``Grant.key_expiry_written`` False) from that one line, taken strictly; the
expiry sweep then does not rewrite its lines for their minute every round (the account's expiry day
still moves), the request page and the admin say so, and the Logbook's entry of the run carries it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from audit.models import LogbookEntry
from fleet import CommandResult
from fleet.ssh_keys import LINES_WITHOUT_EXPIRY_TIME
from requests_app import services
from requests_app.models import AccessRequest, Grant
from requests_app.models.grants import NO_KEY_EXPIRY_NOTE
from tests.conftest import World
from tests.fakes.fleet import FakeFleet
from tests.requests_app.test_grant_lines_expiry import T0, direct_at_t0, shorten_to_one_hour
from tests.requests_app.test_services import active

pytestmark = pytest.mark.usefixtures("service_settings", "fleet")

OLD_HOST = f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704)\npassport: ready\n"


def said(stdout: str, command_id: str = "cmd-create") -> CommandResult:
    return CommandResult(command_id=command_id, status="Success", exit_code=0, stdout=stdout, stderr="")


@pytest.fixture
def direct(world: World, time_machine: Any) -> World:
    return direct_at_t0(world, time_machine)


def eight_hours(world: World) -> tuple[AccessRequest, Grant]:
    """A request of eight hours made active, and its one grant."""
    access_request = active(world, duration=timedelta(hours=8))
    return access_request, Grant.objects.get(request=access_request)


def entry(access_request: AccessRequest, action: str) -> dict[str, Any]:
    found = LogbookEntry.objects.filter(request_id=access_request.pk, action=action).order_by("-id").first()
    assert found is not None, action
    return dict(found.detail)


def test_a_create_that_says_its_lines_went_without_expiry_time_is_recorded_and_the_sweep_leaves_it(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]]
) -> None:
    fleet.will(said(OLD_HOST))
    access_request, grant = eight_hours(direct)
    assert grant.key_expiry_written is False
    assert grant.key_expiry_note == NO_KEY_EXPIRY_NOTE
    ready = entry(access_request, "grant.ready")
    assert ready["key_expiry_written"] is False and ready["openssh_version"] == "7.4"
    # Not behind for the lines' minute: without this it would be sent the create every round.
    assert services.grants_needing_expiry_sync() == []
    calls = len(fleet.calls)
    services.grant_sync_account_expiry(grant_id=grant.pk)
    assert len(fleet.calls) == calls


def test_a_shortening_the_same_day_asks_nothing_of_such_a_host_but_its_account_expiry_still_moves(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]], time_machine: Any
) -> None:
    fleet.will(said(OLD_HOST))
    access_request, grant = eight_hours(direct)
    time_machine.move_to(T0 + timedelta(minutes=20), tick=False)
    shorten_to_one_hour(direct)  # the same UTC day: the account's whole-day expiry stays
    assert services.grants_needing_expiry_sync() == []

    # An end on another day moves the account's expiry, through the same script: still recorded.
    AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=T0 + timedelta(days=1))
    assert services.grants_needing_expiry_sync() == [grant.pk]
    fleet.will(said(f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: unknown)\n", "cmd-move"))
    services.grant_sync_account_expiry(grant_id=grant.pk)
    grant.refresh_from_db()
    assert grant.key_expiry_written is False
    moved = entry(access_request, "grant.expiry_moved")
    assert moved["key_expiry_written"] is False and moved["openssh_version"] == "unknown"
    assert services.grants_needing_expiry_sync() == []


def test_a_host_whose_sshd_took_the_expiry_time_at_its_next_run_is_recorded_as_bounded_again(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]]
) -> None:
    fleet.will(said(OLD_HOST))
    access_request, grant = eight_hours(direct)
    fleet.will(said("passport: ready\n", "cmd-refresh"))
    services.grant_refresh_authorized_keys(grant_id=grant.pk)
    grant.refresh_from_db()
    assert grant.key_expiry_written is True and grant.key_expiry_note == ""
    assert "key_expiry_written" not in entry(access_request, "grant.keys_refreshed")

    fleet.will(said(OLD_HOST, "cmd-refresh-2"))
    services.grant_refresh_authorized_keys(grant_id=grant.pk)
    grant.refresh_from_db()
    assert grant.key_expiry_written is False
    assert entry(access_request, "grant.keys_refreshed")["openssh_version"] == "7.4"


def test_a_host_that_says_nothing_of_it_has_its_bound_recorded_as_written(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]]
) -> None:
    access_request, grant = eight_hours(direct)
    assert grant.key_expiry_written is True
    assert "openssh_version" not in entry(access_request, "grant.ready")


HOSTILE = [
    f" {LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704)",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704) ",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704)\r",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704)\x1b[2J",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 7.4)",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 707)",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 0704)",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 70)",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: UNKNOWN)",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: unknown\u202e)",
    f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704'; rm -rf / #)",
    f'{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: "<script>alert(1)</script>")',
    f"{LINES_WITHOUT_EXPIRY_TIME}",
    f"x{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704)",
]


@pytest.mark.parametrize("line", HOSTILE)
def test_a_line_not_exactly_the_scripts_is_not_taken(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]], line: str
) -> None:
    fleet.will(said(f"passport: ready\n{line}\n"))
    access_request, grant = eight_hours(direct)
    assert grant.key_expiry_written is True
    ready = entry(access_request, "grant.ready")
    assert "openssh_version" not in ready and "key_expiry_written" not in ready
    assert services.grants_needing_expiry_sync() == []


def test_the_request_page_and_the_admin_say_the_host_has_no_sshd_expiry_bound(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]], client: Client
) -> None:
    fleet.will(said(OLD_HOST))
    access_request, grant = eight_hours(direct)
    client.force_login(direct.requester)
    page = client.get(reverse("requests:detail", args=[access_request.pk]))
    assert page.status_code == 200
    assert "No sshd expiry bound on this host (OpenSSH older than 7.7)" in page.content.decode()

    superuser = User.objects.create_superuser("root-admin", "root@example.com", "x")
    client.force_login(superuser)
    admin_page = client.get(reverse("admin:requests_app_grant_change", args=[grant.pk]))
    assert admin_page.status_code == 200
    assert NO_KEY_EXPIRY_NOTE in admin_page.content.decode()
