"""/metrics: who may read it, and that its figures are the database's (any web process, the
same answer)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from audit.models import LogbookCheckpoint
from audit.services import logbook_append
from passport_portal.health import metrics
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus
from terminal.models import RecordingChunk, RecordingState, TerminalSession
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, ok
from tests.requests_app.conftest import fleet, queued, service_settings  # noqa: F401
from tests.requests_app.test_provisioning import T0, active_request, grant, timings  # noqa: F401
from tests.requests_app.test_removal_unreachable import UNREACHABLE, _fail_removal
from tests.terminal.test_consumers import make_active_grant

TOKEN = "metrics-token-for-the-tests-0123456789"


def _scrape(**extra: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def token(settings: Any) -> str:
    settings.PASSPORT_METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.mark.django_db
def test_a_token_is_required_when_set(token: str) -> None:
    missing = Client().get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Basic {token}").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


@pytest.mark.django_db
def test_without_a_token_production_refuses_and_elsewhere_only_loopback(settings: Any) -> None:
    settings.PASSPORT_METRICS_TOKEN = ""
    settings.PRODUCTION = True
    assert Client().get("/metrics").status_code == 403  # the test client is 127.0.0.1
    settings.PRODUCTION = False
    assert Client().get("/metrics").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="10.0.0.8").status_code == 403


@pytest.mark.django_db
def test_the_figures_are_the_database_s(world: World, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = timezone.now()
    before = _scrape()
    assert before[("passport_expiry_lag_seconds", ())] == 0
    assert before[("passport_open_terminals", ())] == 0

    # An active request two minutes past its end, provisioned 20 s after its approval.
    late = make_active_grant(world)
    AccessRequest.objects.filter(pk=late.request_id).update(
        decided_at=now - timedelta(minutes=30, seconds=20),
        activated_at=now - timedelta(minutes=30),
        expires_at=now - timedelta(minutes=2),
    )
    # Another, provisioned in 200 s and not yet due.
    slow = make_active_grant(world, world.db)
    AccessRequest.objects.filter(pk=slow.request_id).update(
        decided_at=now - timedelta(seconds=210), activated_at=now - timedelta(seconds=10)
    )
    open_one = TerminalSession.objects.create(user=world.requester, grant=late)
    TerminalSession.objects.create(
        user=world.requester, grant=late, ended_at=now, recording_state=RecordingState.PARTIAL
    )
    TerminalSession.objects.create(
        user=world.requester, grant=late, ended_at=now, recording_state=RecordingState.FAILED
    )
    RecordingChunk.objects.create(session=open_one, number=1, key="k1", sha256="0" * 64, size=1000)
    RecordingChunk.objects.create(session=open_one, number=2, key="k2", sha256="0" * 64, size=24)
    for action in (
        "grant.provision_retry",
        "grant.provision_retry",
        "grant.failed",
        "grant.remove_retry",  # the removals' are counted on their grants, not in the Logbook
    ):
        logbook_append(action=action, actor=None, detail={"error": "boom"})
    Grant.objects.filter(pk=late.pk).update(cleanup_failures=2)
    head = logbook_append(action="test.event", actor=None)
    LogbookCheckpoint.objects.create(
        entry_id=head.pk,
        entry_hash=head.hash,
        key_id="k",
        written_at=now - timedelta(seconds=90),
        reason="periodic",
        object_key="x",
    )

    after = _scrape()
    assert after[("passport_access_requests", (("status", "active"),))] == 2
    assert after[("passport_access_requests", (("status", "pending"),))] == 0
    assert 115 <= after[("passport_expiry_lag_seconds", ())] <= 180
    assert after[("passport_open_terminals", ())] == 1
    assert after[("passport_recording_bytes_total", ())] == 1024
    assert after[("passport_recording_failures_total", (("state", "partial"),))] == 1
    assert after[("passport_recording_failures_total", (("state", "failed"),))] == 1
    assert after[("passport_run_command_errors_total", (("operation", "provision"),))] == 3
    assert after[("passport_run_command_errors_total", (("operation", "remove"),))] == 2
    assert after[("passport_provisioning_failures_total", ())] == 1
    assert after[("passport_provisioning_seconds_count", ())] == 2
    assert after[("passport_provisioning_seconds_bucket", (("le", "15.0"),))] == 0
    assert after[("passport_provisioning_seconds_bucket", (("le", "30.0"),))] == 1
    assert after[("passport_provisioning_seconds_bucket", (("le", "300.0"),))] == 2
    assert after[("passport_provisioning_seconds_sum", ())] == pytest.approx(220, abs=1)
    assert 85 <= after[("passport_logbook_checkpoint_age_seconds", ())] <= 150
    assert after[("passport_logbook_unchecked_seconds", ())] == 0

    # An entry after the checkpoint: what only the key protects, and for how long.
    # (The Logbook is append-only: the scrape is moved 40 s on instead of the entry back.)
    newer = logbook_append(action="test.event", actor=None)
    later = newer.created_at + timedelta(seconds=40)
    monkeypatch.setattr(metrics, "timezone", SimpleNamespace(now=lambda: later))
    assert _scrape()[("passport_logbook_unchecked_seconds", ())] == pytest.approx(40, abs=0.5)


REMOVE_ERRORS = ("passport_run_command_errors_total", (("operation", "remove"),))


@pytest.mark.usefixtures("service_settings", "queued", "fleet")
def test_every_failed_removal_is_counted_though_few_are_written(
    world: World, token: str, fake_fleet: FakeFleet, time_machine: Any
) -> None:
    """The Logbook hears of a host that never answers a few times a day; the counter hears of
    every failed try, and keeps them once the removal finally works."""
    time_machine.move_to(T0, tick=False)
    access_request, (grant_id,) = active_request(world)
    services.access_request_complete(access_request=access_request, actor=world.requester)
    assert _scrape()[REMOVE_ERRORS] == 0

    _fail_removal(fake_fleet, grant_id, time_machine, [UNREACHABLE] * 200)
    assert _scrape()[REMOVE_ERRORS] == 200

    fake_fleet.will(ok())  # the fleet fixture's own fake, its CA key fixed
    services.grant_deprovision(grant_id=grant_id)
    assert grant(grant_id).status == GrantStatus.REMOVED
    assert _scrape()[REMOVE_ERRORS] == 200
