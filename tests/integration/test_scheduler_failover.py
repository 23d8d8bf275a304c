"""Two schedulers (beat processes) on the real stack, one active: kill -9 the active one and the
standby sends from then on, so a request still expires (passport_portal.scheduler)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import AwsAccount
from passport_portal.scheduler import ALWAYS_SENT
from requests_app import services
from requests_app.models import AccessRequest, Instance, RequestStatus
from tests.factories import make_membership, make_user
from tests.stack import ROOT, WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db"), pytest.mark.timeout(300)]

SENDING = "Sending due task"


def _sent(log: Path) -> int:
    """What the holder of the lock sends (every beat sends the Logbook's checkpoint: ALWAYS_SENT)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for line in lines if SENDING in line and not any(f" {name} (" in line for name in ALWAYS_SENT))


def test_the_standby_scheduler_takes_over_when_the_active_one_is_killed(
    worker: WorkerProcess, prod: AwsAccount, tmp_path: Path
) -> None:
    active_log = worker.log_dir / "beat.log"
    standby_log = tmp_path / "standby-beat.log"
    with standby_log.open("a") as log:
        standby = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "passport_portal", "beat", "--loglevel", "INFO",
                "--schedule", str(tmp_path / "standby-schedule"),
            ],
            cwd=ROOT, env=worker.env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        # The active one keeps sending (the sweep every 3 s); the standby, once started, sends nothing.
        wait_for(lambda: "beat: Starting..." in standby_log.read_text(), timeout=60, what="the standby beat to start")
        before = _sent(active_log)
        wait_for(lambda: _sent(active_log) >= before + 3, timeout=30, what="the active beat to send")
        assert _sent(standby_log) == 0

        assert worker.scheduler is not None
        worker.scheduler.kill()  # kill -9: the host is gone, its database session with it
        worker.scheduler.wait(timeout=10)
        wait_for(lambda: _sent(standby_log) > 0, timeout=30, what="the standby beat to send")

        # And it sends what matters: a request due now expires.
        requester, approver = make_user("failover-requester"), make_user("failover-approver")
        make_membership(requester, prod, "admin")
        make_membership(approver, prod, "admin", can_approve=True)
        access_request = services.access_request_create(
            requester=requester,
            account=prod,
            instances=[Instance.objects.get(account=prod, name="web-1")],
            reason="Expire under the standby",
        )
        services.access_request_approve(access_request=access_request, approver=approver)
        wait_for(
            lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE, what="activation"
        )
        AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=timezone.now() + timedelta(seconds=1))
        wait_for(
            lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.EXPIRED,
            timeout=60,
            what="expiry sent by the standby",
        )
    finally:
        # The stack's own scheduler again for the tests after this one; the standby stops.
        worker.start_scheduler()
        standby.terminate()
        try:
            standby.wait(timeout=20)
        except subprocess.TimeoutExpired:
            standby.kill()
            standby.wait(timeout=10)
