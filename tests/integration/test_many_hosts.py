"""Passport as several hosts (#16): two web processes (daphne) with their own disks, two Celery
workers and two schedulers (beat with the LeaderScheduler: one sends), all separate OS processes on
PostgreSQL, a Redis of this module's own (so it can be killed without touching the suite's) and
devcloud's S3 for recordings and CLI wheels. Nothing is per host: a request is created on one web
process and approved on the other, its terminal opened on one and ended from the other, its
recording played on the other; a CLI wheel published on one host is listed and downloaded from the
other. Then the faults, one at a time, each leaving the deployment whole for the next: kill -9 of a
web process with an open terminal, of the worker provisioning, of the active scheduler; Redis
killed and started again under an open terminal and an approval.

The suite's own worker and beat (tests/stack.py) are stopped meanwhile: their sweeps would take
work over and their beat would hold the scheduler lock. Short sweeps and leases throughout.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import timedelta

import boto3
import pytest
import requests
from django.utils import timezone

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from terminal.consumers import CLOSE_UNAVAILABLE
from terminal.models import RecordingState, TerminalSession
from terminal.recorder import recording_kept
from tests.integration.many_hosts import (
    HOST,
    SLOW_HOST,
    Deployment,
    Person,
    Terminal,
    create,
    person,
    recording_views,
    removed,
    request_active,
    request_status,
    sent,
)
from tests.integration.test_worker_takeover import _agent
from tests.stack import AWS_ENV, Cloud, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db"), pytest.mark.timeout(300)]

# --- the scenario --------------------------------------------------------------------------------


def test_a_request_crosses_both_web_processes_and_its_recording_plays_on_the_other(
    many_hosts: Deployment, many_hosts_people: tuple[Person, Person], prod: AwsAccount, aws: Cloud
) -> None:
    d, (requester, approver) = many_hosts, many_hosts_people
    grant = request_active(d, prod, aws, requester, approver)
    request_id = grant.request_id
    with Terminal(requester, d.web_a, grant) as terminal:
        terminal.ready_with_echo("across")
        completed = requester.api(d.web_b, f"requests/{request_id}/complete/")
        assert completed.status_code == 200, completed.text
        terminal.wait_closed(20)
    closed = terminal.envelope("closed")
    assert closed is not None and closed["reason"] == "The access request was completed; this terminal is closed."

    record = wait_for(
        lambda: (
            TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).exclude(recording_sha256="").first()
        ),
        timeout=30,
        what="the recording sealed by web A",
    )
    assert record.recording_state == RecordingState.COMPLETE
    # Played on web B, whose disk never saw it: the page checks the digest, the cast is the recording.
    auditor = person("ines", prod, is_auditor=True)
    page = auditor.get(d.web_b, f"/terminal/recordings/{record.pk}/")
    assert page.status_code == 200 and 'data-testid="recording-verified"' in page.text
    cast = auditor.get(d.web_b, f"/terminal/recordings/{record.pk}/cast")
    assert cast.status_code == 200
    assert hashlib.sha256(cast.content).hexdigest() == record.recording_sha256
    assert "across42" in cast.text
    views = recording_views(request_id)
    assert any(view.get("what") == "page" and view.get("sha256_ok") is True for view in views), views
    assert not [view for view in views if view.get("sha256_ok") is False], views
    assert not LogbookEntry.objects.filter(action="recording.missing").exists()
    assert d.cast_files() == []  # nothing on either web host's disk
    removed(request_id)
    assert grant.username not in aws.host_users(HOST)


def test_a_cli_wheel_published_on_host_a_is_listed_and_downloaded_from_web_b(
    many_hosts: Deployment, aws: Cloud
) -> None:
    d = many_hosts
    published = d.manage(d.web_a, "build_cli_wheel")  # as a release is published: on one host
    match = re.search(r"Published (\S+) \(sha256 ([0-9a-f]{64})[^)]*\) in (\S+)", published)
    assert match, published
    filename, sha256, where = match.groups()
    assert where == f"s3://{d.bucket}/cli-wheels", published
    # Web B's disk never saw it: it lists the release and serves the very bytes host A published.
    index = requests.get(f"{d.web_b.url}/api/cli/releases/", timeout=30)
    assert index.status_code == 200, index.text
    assert [(item["filename"], item["sha256"]) for item in index.json()["releases"]] == [(filename, sha256)]
    download = requests.get(f"{d.web_b.url}/cli/releases/{filename}", timeout=30)
    assert download.status_code == 200, download.status_code
    assert hashlib.sha256(download.content).hexdigest() == sha256
    s3 = boto3.client("s3", endpoint_url=aws.endpoint_url, region_name=AWS_ENV["AWS_REGION"])
    assert download.content == s3.get_object(Bucket=d.bucket, Key=f"cli-wheels/{filename}")["Body"].read()
    assert [path for web in (d.web_a, d.web_b) for path in web.directory.rglob("*") if "wheel" in path.name] == []


def test_kill_9_of_a_web_process_with_an_open_terminal_is_finalised_by_the_sweep(
    many_hosts: Deployment, many_hosts_people: tuple[Person, Person], prod: AwsAccount, aws: Cloud
) -> None:
    d, (requester, approver) = many_hosts, many_hosts_people
    grant = request_active(d, prod, aws, requester, approver)
    with Terminal(requester, d.web_a, grant) as terminal:
        terminal.ready_with_echo("kept")
        record = TerminalSession.objects.get(grant=grant)
        # What the dead process had stored (a chunk a second here) is what is kept: wait until the echo is.
        wait_for(lambda: "kept42" in recording_kept(record).transcript.output, timeout=20, what="the echo stored")
        d.web_a.kill()  # kill -9 with the terminal open
    try:
        record = wait_for(
            lambda: TerminalSession.objects.filter(pk=record.pk, ended_at__isnull=False).first(),
            timeout=60,
            what="the sweep to finalise the terminal",
        )
        assert record.recording_state == RecordingState.PARTIAL
        assert "web process serving this terminal stopped" in record.end_reason
        ended = LogbookEntry.objects.get(action="terminal.ended", request_id=grant.request_id)
        assert ended.detail["sealed_by"] == "sweep" and ended.detail["recording_state"] == "partial"
        assert "web process serving this terminal stopped" in str(ended.detail)
        ssm = aws.devcloud.runtime.sessions.get(record.ssm_session_id)
        assert ssm is not None and not ssm.active
        # The partial recording plays on web B.
        auditor = person("ines", prod, is_auditor=True)
        cast = auditor.get(d.web_b, f"/terminal/recordings/{record.pk}/cast")
        assert cast.status_code == 200 and "kept42" in cast.text
        assert hashlib.sha256(cast.content).hexdigest() == record.recording_sha256
    finally:
        d.web_start(d.web_a)  # the host comes back (on another port)
    assert requester.api(d.web_a, f"requests/{grant.request_id}/complete/").status_code == 200
    removed(grant.request_id)


def test_kill_9_of_the_worker_provisioning_and_the_other_finishes_within_a_minute(
    many_hosts: Deployment, many_hosts_people: tuple[Person, Person], prod: AwsAccount, aws: Cloud
) -> None:
    d, (requester, approver) = many_hosts, many_hosts_people
    request_id = create(requester, d.web_a, prod, aws, host=SLOW_HOST)
    offsets = [w.log_path.stat().st_size for w in d.workers]
    _agent(aws, prod, "ConnectionLost")  # the create script waits, Pending, holding the claim
    try:
        assert approver.approve(d.web_b, request_id).status_code == 200
        grant = wait_for(
            lambda: Grant.objects.filter(request_id=request_id, status=GrantStatus.PROVISIONING, attempts=1).first(),
            timeout=30,
            what="a worker to claim the grant",
        )
        holders = wait_for(
            lambda: [w for w, at in zip(d.workers, offsets, strict=True)
                     if "provision_grant[" in w.log_path.read_text()[at:]],
            timeout=10, what="the worker running provision_grant",
        )  # fmt: skip
        assert len(holders) == 1, "one task, one worker"
        holder = holders[0]
        other = next(w for w in d.workers if w is not holder)
        holder.kill()
    finally:
        _agent(aws, prod, "Online")
    try:
        wait_for(
            lambda: request_status(request_id) == RequestStatus.ACTIVE, timeout=60, what="the other worker to finish"
        )
        grant.refresh_from_db()
        assert grant.status == GrantStatus.READY and grant.attempts == 2
        assert other.process is not None and other.process.poll() is None
        assert grant.username in aws.host_users(SLOW_HOST)
    finally:
        holder.start()
    assert requester.api(d.web_b, f"requests/{request_id}/complete/").status_code == 200
    removed(request_id)
    assert grant.username not in aws.host_users(SLOW_HOST)


def test_kill_9_of_the_active_scheduler_and_the_standby_still_expires_a_due_request(
    many_hosts: Deployment, many_hosts_people: tuple[Person, Person], prod: AwsAccount, aws: Cloud
) -> None:
    d, (requester, approver) = many_hosts, many_hosts_people
    before = [sent(w) for w in d.workers]
    wait_for(lambda: sum(sent(w) for w in d.workers) >= sum(before) + 3, timeout=30, what="beat to send")
    time.sleep(1)
    counts = [sent(w) for w in d.workers]
    time.sleep(6)
    sending = [w for w, count in zip(d.workers, counts, strict=True) if sent(w) > count]
    assert len(sending) == 1, "exactly one scheduler sends"
    active, standby = sending[0], next(w for w in d.workers if w is not sending[0])
    assert active.scheduler is not None
    active.scheduler.kill()
    active.scheduler.wait(timeout=10)
    try:
        standby_before = sent(standby)
        wait_for(lambda: sent(standby) > standby_before, timeout=30, what="the standby to take over")
        grant = request_active(d, prod, aws, requester, approver)
        AccessRequest.objects.filter(pk=grant.request_id).update(expires_at=timezone.now() + timedelta(seconds=1))
        wait_for(lambda: request_status(grant.request_id) == RequestStatus.EXPIRED, timeout=60, what="expiry")
        removed(grant.request_id)
    finally:
        active.start_scheduler()  # back, as the standby now


def test_redis_killed_under_an_open_terminal_and_an_approval_and_the_work_happens_when_it_is_back(
    many_hosts: Deployment, many_hosts_people: tuple[Person, Person], prod: AwsAccount, aws: Cloud
) -> None:
    d, (requester, approver) = many_hosts, many_hosts_people
    grant = request_active(d, prod, aws, requester, approver)
    pending = create(requester, d.web_a, prod, aws)
    with Terminal(requester, d.web_a, grant) as terminal:
        try:
            terminal.ready_with_echo("outage")
            d.redis.kill()
            approved = approver.approve(d.web_b, pending)
            terminal.wait_closed(20)
        finally:
            if d.redis.process is not None and d.redis.process.poll() is not None:
                d.redis.start()
    # The approval stands and says its work is queued; no 500.
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == RequestStatus.APPROVED and approved.json().get("queued")
    # The terminal was closed, with the reason, and sealed: no orphaned shell.
    assert terminal.close_code == CLOSE_UNAVAILABLE, terminal.close_code
    closed = terminal.envelope("closed")
    assert closed is not None and "message channel" in closed["reason"]
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(),
        timeout=30,
        what="the terminal sealed",
    )
    assert "message channel" in record.end_reason
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=grant.request_id)
    assert "message channel" in str(ended.detail)
    ssm = aws.devcloud.runtime.sessions.get(record.ssm_session_id)
    assert ssm is not None
    wait_for(lambda: not ssm.active, timeout=10, what="the SSM session ended")
    # Redis is back: the approval's provisioning happens (the sweep hands it out).
    wait_for(
        lambda: request_status(pending) == RequestStatus.ACTIVE, timeout=60, what="the queued approval provisioned"
    )
    assert all(w.process is not None and w.process.poll() is None for w in d.workers), "a worker died"
    # And the channel layer works again across hosts: a terminal on A closes when B ends its request.
    assert requester.api(d.web_b, f"requests/{grant.request_id}/complete/").status_code == 200
    with Terminal(requester, d.web_a, Grant.objects.get(request_id=pending)) as again:
        again.ready_with_echo("back")
        assert requester.api(d.web_b, f"requests/{pending}/complete/").status_code == 200
        again.wait_closed(20)
    assert again.envelope("closed") is not None
    for request_id in (grant.request_id, pending):
        removed(request_id)
