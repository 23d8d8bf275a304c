"""A Linux grant's ``authorized_keys`` lines stop taking certificates at its request's end (sshd's
``expiry-time``), and move with it: a policy that shortens the request moves them back, so a
certificate signed before the shortening (valid until the old end) is refused on the host from the
new end, even should the removal never run (an agent down, sshd up) on a direct-CLI account."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection, connections

from accounts.models import ApprovalPolicy, AwsAccount
from fleet import CommandResult
from requests_app import services
from requests_app.models import AccessRequest, Grant, RequestStatus
from sshca.models import IssuedCertificate
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, ok
from tests.requests_app.test_services import active

pytestmark = pytest.mark.usefixtures("service_settings", "fleet")

# Not on a whole minute: the lines' minute is the end's, rounded down.
T0 = datetime(2030, 3, 4, 13, 0, 42, tzinfo=UTC)
_LINES_RE = re.compile(r"printf '%s' '([A-Za-z0-9+/=]*)' \| base64 -d")
_EXPIRY_TIME_RE = re.compile(r',expiry-time="([0-9]{12}Z)"')


def lines_written(fleet: FakeFleet, nth: int = -1) -> list[str]:
    """The grant lines of the last create script sent (or of the ``nth``)."""
    scripts = [call["script"] for call in fleet.calls if "--expiredate" in call.get("script", "")]
    assert scripts
    encoded = _LINES_RE.search(scripts[nth])
    assert encoded is not None
    return base64.b64decode(encoded.group(1)).decode().splitlines()


def expiry_times(lines: list[str]) -> set[str]:
    found = set()
    for line in lines:
        match = _EXPIRY_TIME_RE.search(line.split(" ", 1)[0])
        found.add(match.group(1) if match else "none")
    return found


def public_key() -> str:
    return (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def direct_at_t0(world: World, time_machine: Any) -> World:
    """The world at ``T0``, its account's CLI sessions straight to the host's sshd: no portal
    between the certificate and the login."""
    time_machine.move_to(T0, tick=False)
    AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    world.prod.refresh_from_db()
    return world


@pytest.fixture
def committed(transactional_db: None) -> Iterator[None]:
    """For a test whose workers race on their own connections: each sees what the other commits."""
    yield
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")


@pytest.fixture
def direct(world: World, time_machine: Any) -> World:
    return direct_at_t0(world, time_machine)


def shorten_to_one_hour(world: World) -> None:
    policy, _ = ApprovalPolicy.objects.get_or_create(account=world.prod)
    policy.deny_over_duration = timedelta(hours=1)
    policy.save()


def test_the_lines_a_create_writes_stop_at_the_requests_end_to_the_minute_rounded_down(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]]
) -> None:
    access_request = active(direct, duration=timedelta(hours=8))
    assert access_request.expires_at == T0 + timedelta(hours=8)  # 21:00:42
    lines = lines_written(fleet)
    assert lines and expiry_times(lines) == {"203003042100Z"}
    grant = Grant.objects.get(request=access_request)
    assert grant.key_expires_at == datetime(2030, 3, 4, 21, 0, tzinfo=UTC)
    assert services.grants_needing_expiry_sync() == []


def test_a_shortening_moves_the_lines_of_a_certificate_signed_before_it_to_the_new_end(
    direct: World,
    fleet: FakeFleet,
    queued: list[tuple[str, int]],
    time_machine: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    access_request = active(direct, duration=timedelta(hours=8), ticket="CHG-2")
    grant = Grant.objects.select_related("request__account", "instance").get(request=access_request)
    services.grant_issue_certificate(grant=grant, user=direct.requester, public_key=public_key())
    time_machine.move_to(T0 + timedelta(minutes=20), tick=False)

    with django_capture_on_commit_callbacks(execute=True):
        shorten_to_one_hour(direct)

    access_request = AccessRequest.objects.get(pk=access_request.pk)
    assert access_request.status == RequestStatus.ACTIVE
    assert access_request.expires_at == T0 + timedelta(hours=1)  # 14:00:42, the same day
    # What was signed stays signed: only the host's line can refuse it from the new end.
    certificate = IssuedCertificate.objects.get(request_id=access_request.pk)
    assert certificate.valid_before > access_request.expires_at
    # The same day as before for the account's whole-day expiry, but the lines are behind.
    assert ("sync_grant_expiry", grant.pk) in queued
    assert services.grants_needing_expiry_sync() == [grant.pk]
    services.grant_sync_account_expiry(grant_id=grant.pk)

    assert expiry_times(lines_written(fleet)) == {"203003041400Z"}
    grant.refresh_from_db()
    assert grant.key_expires_at == datetime(2030, 3, 4, 14, 0, tzinfo=UTC)
    assert grant.key_expires_at <= access_request.expires_at
    assert services.grants_needing_expiry_sync() == []


def test_the_sweep_finds_lines_left_after_the_end_by_a_lost_task(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]], time_machine: Any
) -> None:
    access_request = active(direct, duration=timedelta(hours=8))
    grant = Grant.objects.get(request=access_request)
    time_machine.move_to(T0 + timedelta(minutes=20), tick=False)
    shorten_to_one_hour(direct)  # its task, queued on commit, never ran

    assert services.grants_needing_expiry_sync() == [grant.pk]
    services.grant_sync_account_expiry(grant_id=grant.pk)
    assert expiry_times(lines_written(fleet)) == {"203003041400Z"}


def test_lines_of_before_the_expiry_time_are_written_again_with_it(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]]
) -> None:
    access_request = active(direct, duration=timedelta(hours=8))
    grant = Grant.objects.get(request=access_request)
    Grant.objects.filter(pk=grant.pk).update(key_expires_at=None)  # written by the release before

    assert services.grants_needing_expiry_sync() == [grant.pk]
    services.grant_sync_account_expiry(grant_id=grant.pk)
    assert expiry_times(lines_written(fleet)) == {"203003042100Z"}
    assert services.grants_needing_expiry_sync() == []


@pytest.mark.usefixtures("committed")
def test_a_key_refresh_landing_after_a_shortenings_move_leaves_the_lines_behind_not_in_step(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]]
) -> None:
    """A key refresh (CA rotation, ports changed) renders the lines with the request's end of then;
    a policy shortens the request while its script is on its way, and the move that queued reaches
    the host first: the refresh's script, landing last, leaves the old end there. The move records
    after the refresh did; it must not take the refresh's record (the very end it loaded) for "no
    other script ran meanwhile" and call the host in step: the sweep moves the lines again."""
    access_request = active(direct, duration=timedelta(hours=8))
    grant = Grant.objects.get(request=access_request)
    landed, refresh_recorded = threading.Event(), threading.Event()
    move: dict[str, Any] = {}

    def sync_grant_expiry() -> None:  # the task the shortening queued, on another worker
        try:
            move["outcome"] = services.grant_sync_account_expiry(grant_id=grant.pk)
        except BaseException as exc:  # said below
            move["error"] = exc
        finally:
            connections.close_all()

    mover = threading.Thread(target=sync_grant_expiry, daemon=True)

    def refresh_on_its_way(**kw: Any) -> CommandResult:
        shorten_to_one_hour(direct)
        assert ("sync_grant_expiry", grant.pk) in queued
        mover.start()
        assert landed.wait(20), move
        return ok("cmd-refresh")  # lands after the move's

    def move_on_the_host(**kw: Any) -> CommandResult:
        landed.set()
        refresh_recorded.wait(20)  # the refresh records first, then the move
        return ok("cmd-move")

    fleet.will(refresh_on_its_way, move_on_the_host)
    services.grant_refresh_authorized_keys(grant_id=grant.pk)
    refresh_recorded.set()
    mover.join(30)
    assert "error" not in move and "outcome" in move, move

    # Sent in this order (the refresh, then the move), landed the other way round.
    assert expiry_times(lines_written(fleet, -2)) == {"203003042100Z"}
    assert expiry_times(lines_written(fleet, -1)) == {"203003041400Z"}
    assert services.grants_needing_expiry_sync() == [grant.pk], Grant.objects.values(
        "host_expires_at", "key_expires_at"
    ).get(pk=grant.pk)
    services.grant_sync_account_expiry(grant_id=grant.pk)  # the sweep's move
    assert expiry_times(lines_written(fleet)) == {"203003041400Z"}
    grant.refresh_from_db()
    assert grant.key_expires_at == datetime(2030, 3, 4, 14, 0, tzinfo=UTC)
    assert services.grants_needing_expiry_sync() == []


def test_a_lost_record_leaves_the_lines_not_known_though_a_sibling_records_the_shared_user(
    direct: World, fleet: FakeFleet, queued: list[tuple[str, int]]
) -> None:
    """A key refresh whose record is lost (a shortening's move recorded while it was on its way) does
    not know which script's lines the host has: here the refresh's, at the old end. The lines must
    read as not known, not as the move recorded them; else the create of the same person's other
    request on that host, recording the shared user's expiry on this grant, makes it read in step
    for good, its lines taking pre-shortening certificates to the old end."""
    access_request = active(direct, duration=timedelta(hours=8))
    grant = Grant.objects.get(request=access_request)

    def refresh_on_its_way(**kw: Any) -> CommandResult:
        # A shortening; its move is sent after the refresh, lands first and records first.
        shorten_to_one_hour(direct)
        fleet.will(lambda **kw2: ok("cmd-move"))
        services.grant_sync_account_expiry(grant_id=grant.pk)
        return ok("cmd-refresh")  # lands last: the host has its lines, at the old end

    fleet.will(refresh_on_its_way)
    services.grant_refresh_authorized_keys(grant_id=grant.pk)
    assert expiry_times(lines_written(fleet, -2)) == {"203003042100Z"}  # the refresh's, landed last
    assert expiry_times(lines_written(fleet, -1)) == {"203003041400Z"}  # the move's
    assert services.grants_needing_expiry_sync() == [grant.pk]
    grant.refresh_from_db()
    assert (grant.key_expires_at, grant.key_expiry_written) == (None, None)

    # Before the sweep: the same person's other request on that host gets ready (the same Linux user).
    sibling = Grant.objects.get(request=active(direct, duration=timedelta(hours=1)))
    assert (sibling.username, sibling.instance_id) == (grant.username, grant.instance_id)
    assert services.grants_needing_expiry_sync() == [grant.pk]

    services.grant_sync_account_expiry(grant_id=grant.pk)  # the sweep's move
    assert expiry_times(lines_written(fleet)) == {"203003041400Z"}
    assert services.grants_needing_expiry_sync() == []
