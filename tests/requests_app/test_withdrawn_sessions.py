"""A Session Manager session the portal started for the CLI's own data channel (`passport forward`,
`connect` to Windows) ends when an admin takes its port off the account: the session is ended with
TerminateSession and ``session.terminated`` says ``"reason": "port withdrawn"``. Sessions to ports
still open, the recording paths' own, and sessions already over are left alone; AWS refusing to
end one is on record and does not keep the others open. An SSH session on that path (on a direct
account) ends likewise when an admin makes the account's CLI sessions recorded. Real devcloud
throughout.

Sessions the person started with the request's AWS credentials (`passport aws-credentials`, then
`aws ssm start-session`), of which the Logbook has no ``session.started``, are found by their owner,
the request's role session, and end as well: all of them once the account's CLI sessions are
recorded (their port cannot be told), those on an instance whose region is taken off.

The worker's side (the task queued by the admin's save) is in tests/cli/test_forward_withdrawn.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import InvalidRegionError
from rest_framework.test import APIClient

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import fleet_for
from fleet.aws.clients import AwsClients
from fleet.aws.sessions import SessionsMixin
from requests_app import services
from requests_app.models import Grant, Instance
from tests.audit.admin_forms import form_data, post_ok, superuser_client
from tests.requests_app.conftest import sessions_terminated
from tests.requests_app.test_forward_ports import FORWARD, SSH, Scene
from tests.stack import Cloud, account_admin_client, portal_role_denied, ssm_session_active
from workers import tasks

pytestmark = pytest.mark.django_db

WITHDRAWN = "port withdrawn"
KEPT, TAKEN = 8443, 5432


@pytest.fixture
def scene(devcloud_scene: Scene) -> Scene:
    AwsAccount.objects.filter(pk=devcloud_scene.prod.pk).update(extra_forward_ports=[TAKEN, KEPT])
    devcloud_scene.prod.refresh_from_db()
    return devcloud_scene


def _grant(instance: Instance) -> Grant:
    return Grant.objects.select_related("instance", "request__account", "request__requester").get(instance=instance)


def _start(scene: Scene, instance: Instance, port: int, *, document: str = FORWARD, via: str = "cli") -> str:
    started = services.grant_start_session(
        grant=_grant(instance), user=scene.alice, document=document, port=port, via=via
    )
    return str(started["SessionId"])


def _withdraw(scene: Scene, ports: list[int]) -> None:
    """An admin's save of the account's extra forwarding ports (the signal's path; its on-commit
    task is the worker's, here the service is called as that task calls it)."""
    account = AwsAccount.objects.get(pk=scene.prod.pk)
    account.extra_forward_ports = ports
    account.save()


def test_sessions_to_a_withdrawn_port_end_and_the_rest_carry_on(scene: Scene, aws: Cloud) -> None:
    taken_web = _start(scene, scene.web, TAKEN)
    taken_windows = _start(scene, scene.windows, TAKEN)
    kept = _start(scene, scene.web, KEPT)
    remote_desktop = _start(scene, scene.windows, 3389)
    proxy = _start(scene, scene.web, 22, document=SSH, via="cli-proxy")
    # One to the port that goes, already over (the CLI stopped): nothing to end, nothing to write.
    over = _start(scene, scene.web, TAKEN)
    fleet_for(scene.prod).terminate_session(over, "us-east-1")

    _withdraw(scene, [KEPT])
    result = services.sessions_end_withdrawn(account_id=scene.prod.pk)

    assert sorted(result.ended) == sorted([taken_web, taken_windows]) and result.failed == []
    for session_id in (taken_web, taken_windows):
        assert not ssm_session_active(aws, session_id), session_id
    for session_id in (kept, remote_desktop, proxy):
        assert ssm_session_active(aws, session_id), session_id
    entries = {entry.detail["session_id"]: entry for entry in sessions_terminated()}
    assert set(entries) == {taken_web, taken_windows}
    web_entry = entries[taken_web]
    assert web_entry.actor is None and web_entry.actor_label == "system"
    assert web_entry.request_id == scene.request.pk and web_entry.account_id == scene.prod.account_id
    assert web_entry.instance_ids.split() == [scene.web.instance_id]
    assert web_entry.detail == {
        "session_id": taken_web,
        "port": TAKEN,
        "document": FORWARD,
        "via": "cli",
        "reason": WITHDRAWN,
        "allowed": [22, 3389, KEPT],
    }
    assert entries[taken_windows].instance_ids.split() == [scene.windows.instance_id]

    # Asked again (the periodic sweep, a retried task): the ended ones are not ended twice.
    again = services.sessions_end_withdrawn(account_id=scene.prod.pk)
    assert again.ended == [] and again.failed == []
    assert len(sessions_terminated()) == 2
    assert ssm_session_active(aws, kept)


def test_nothing_is_ended_while_every_port_stays_open(scene: Scene, aws: Cloud) -> None:
    taken = _start(scene, scene.web, TAKEN)
    _withdraw(scene, [TAKEN, KEPT, 9000])  # a port added, none taken off
    result = services.sessions_end_withdrawn(account_id=scene.prod.pk)
    assert result.ended == [] and result.failed == []
    assert ssm_session_active(aws, taken)
    assert sessions_terminated() == []


def test_the_periodic_run_ends_what_no_save_announced(scene: Scene, aws: Cloud, settings: Any) -> None:
    """A change whose task was lost (the broker away at the save; here a change without the
    model's signal) is found by the scheduled run, on the revocation queue like the save's own."""
    taken, kept = _start(scene, scene.web, TAKEN), _start(scene, scene.web, KEPT)
    AwsAccount.objects.filter(pk=scene.prod.pk).update(extra_forward_ports=[KEPT])

    assert tasks.end_all_withdrawn_sessions() == 1

    assert not ssm_session_active(aws, taken) and ssm_session_active(aws, kept)
    assert [entry.detail["session_id"] for entry in sessions_terminated()] == [taken]
    assert tasks.end_all_withdrawn_sessions() == 0
    scheduled = settings.CELERY_BEAT_SCHEDULE["end-withdrawn-sessions"]
    assert scheduled["task"] == tasks.end_all_withdrawn_sessions.name
    for task in (tasks.end_all_withdrawn_sessions, tasks.end_withdrawn_sessions):
        assert settings.CELERY_TASK_ROUTES[task.name] == {"queue": settings.PASSPORT_REVOCATION_QUEUE}


@contextmanager
def _portal_may_not_end(aws: Cloud, account_id: str, session_id: str) -> Iterator[None]:
    """The account's administrator denies the portal's role TerminateSession on this one session
    (an explicit Deny, which AWS lets win over the role's Allow); taken back afterwards."""
    iam = account_admin_client(aws, account_id, "iam")
    item = next(account for account in aws.manifest["accounts"] if account["id"] == account_id)
    role = item["role_arn"].rsplit("/", 1)[-1]
    deny = {
        "Effect": "Deny",
        "Action": "ssm:TerminateSession",
        "Resource": f"arn:aws:ssm:us-east-1:{account_id}:session/{session_id}",
    }
    iam.put_role_policy(
        RoleName=role,
        PolicyName="TestsKeepOneSession",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [deny]}),
    )
    try:
        yield
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName="TestsKeepOneSession")


def test_a_session_aws_will_not_end_is_on_record_and_the_others_still_end(scene: Scene, aws: Cloud) -> None:
    refused = _start(scene, scene.web, TAKEN)
    ended = _start(scene, scene.windows, TAKEN)
    _withdraw(scene, [KEPT])

    with _portal_may_not_end(aws, scene.prod.account_id, refused):
        result = services.sessions_end_withdrawn(account_id=scene.prod.pk)

    assert result.failed == [refused] and result.ended == [ended]
    assert ssm_session_active(aws, refused) and not ssm_session_active(aws, ended)
    entries = {entry.detail["session_id"]: entry.detail for entry in sessions_terminated()}
    assert entries[ended]["reason"] == WITHDRAWN and "error" not in entries[ended]
    assert entries[refused]["reason"] == WITHDRAWN
    assert "TerminateSession" in entries[refused]["error"] and "AccessDenied" in entries[refused]["error"]

    # Once AWS lets it (the task retries), the one left open ends too.
    retried = services.sessions_end_withdrawn(account_id=scene.prod.pk)
    assert retried.ended == [refused] and retried.failed == []
    assert not ssm_session_active(aws, refused)


def test_a_session_started_as_its_port_is_withdrawn_is_ended_at_once_and_refused(
    scene: Scene, aws: Cloud, start_raced: Callable[..., list[str]]
) -> None:
    """The port was read as open, then the admin's change committed and its task looked for
    sessions before this one was on record: the start itself sees the change and ends it."""

    def withdrawn_meanwhile() -> None:
        _withdraw(scene, [KEPT])
        assert services.sessions_end_withdrawn(account_id=scene.prod.pk).ended == []

    started = start_raced(withdrawn_meanwhile)
    grant = _grant(scene.web)
    with pytest.raises(RequestRuleError) as refused:
        services.grant_start_session(grant=grant, user=scene.alice, document=FORWARD, port=TAKEN, via="cli")

    assert refused.value.code == "conflict" and f"Port {TAKEN}" in str(refused.value)
    assert not ssm_session_active(aws, started[0])
    entries = LogbookEntry.objects.filter(request_id=scene.request.pk, action__startswith="session.").order_by("pk")
    assert [entry.action for entry in entries] == ["session.started", "session.terminated"]
    last = entries.last()
    assert last is not None and last.detail == {
        "session_id": started[0],
        "port": TAKEN,
        "document": FORWARD,
        "via": "cli",
        "reason": WITHDRAWN,
        "allowed": [22, 3389, KEPT],
    }


# An account switched from direct CLI sessions to recorded ones: the SSH sessions the CLI held itself
# on the direct path (nothing of them passes the portal, nothing records them) end too.
NOW_RECORDED = "the account's CLI sessions are now recorded"


@pytest.fixture
def direct(scene: Scene) -> Scene:
    """The scene's account with direct CLI sessions, as a site admin set it."""
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    scene.prod.refresh_from_db()
    return scene


def _record_sessions_in_admin(scene: Scene) -> None:
    client, _ = superuser_client()
    url = f"/admin/accounts/awsaccount/{scene.prod.pk}/change/"
    post_ok(client, url, form_data(client, url, cli_sessions="record"))


def test_switching_an_account_to_recorded_in_the_admin_ends_its_direct_ssh_sessions(
    direct: Scene, aws: Cloud, queued_endings: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    scene = direct
    ssh = _start(scene, scene.web, 22, document=SSH)  # `connect` on a direct account
    forward_to_sshd = _start(scene, scene.web, 22)  # `passport forward web-1 2222:22`
    ssh_elsewhere = _start(scene, scene.web, KEPT, document=SSH)  # an sshd on another open port
    database = _start(scene, scene.web, TAKEN)  # not SSH: stays direct
    remote_desktop = _start(scene, scene.windows, 3389)
    proxy = _start(scene, scene.web, 22, document=SSH, via="cli-proxy")  # the recording proxy's own

    with django_capture_on_commit_callbacks(execute=True):
        _record_sessions_in_admin(scene)

    assert AwsAccount.objects.get(pk=scene.prod.pk).cli_sessions == AwsAccount.CliSessions.RECORD
    assert queued_endings == [scene.prod.pk]  # the task the save queued after its commit; the worker runs it:
    assert sorted(tasks.end_withdrawn_sessions(scene.prod.pk)["ended"]) == sorted([ssh, forward_to_sshd, ssh_elsewhere])

    for session_id in (ssh, forward_to_sshd, ssh_elsewhere):
        assert not ssm_session_active(aws, session_id), session_id
    for session_id in (database, remote_desktop, proxy):
        assert ssm_session_active(aws, session_id), session_id
    entries = {entry.detail["session_id"]: entry for entry in sessions_terminated()}
    assert set(entries) == {ssh, forward_to_sshd, ssh_elsewhere}
    assert entries[forward_to_sshd].actor is None and entries[forward_to_sshd].request_id == scene.request.pk
    assert entries[forward_to_sshd].instance_ids.split() == [scene.web.instance_id]
    assert entries[forward_to_sshd].detail == {
        "session_id": forward_to_sshd,
        "port": 22,
        "document": FORWARD,
        "via": "cli",
        "reason": NOW_RECORDED,
    }
    assert entries[ssh_elsewhere].detail["reason"] == NOW_RECORDED
    # Asked again: nothing is ended twice.
    assert services.sessions_end_withdrawn(account_id=scene.prod.pk).ended == []


def test_only_a_switch_to_recorded_announces_itself(direct: Scene, save_account: Callable[..., list[int]]) -> None:
    account = direct.prod
    assert save_account(account, name="Acme Production (renamed)") == []
    assert save_account(account, cli_sessions=AwsAccount.CliSessions.DIRECT) == []  # unchanged
    assert save_account(account, cli_sessions=AwsAccount.CliSessions.RECORD) == [account.pk]
    assert save_account(account, cli_sessions=AwsAccount.CliSessions.RECORD) == []  # recorded already
    assert save_account(account, cli_sessions=AwsAccount.CliSessions.DIRECT) == []  # nothing to end on a direct one


def test_a_switch_back_to_direct_before_the_task_runs_ends_nothing(direct: Scene, aws: Cloud) -> None:
    ssh = _start(direct, direct.web, 22, document=SSH)
    _record_sessions_in_admin(direct)
    AwsAccount.objects.filter(pk=direct.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)

    assert services.sessions_end_withdrawn(account_id=direct.prod.pk).ended == []
    assert ssm_session_active(aws, ssh) and sessions_terminated() == []


def test_the_periodic_run_ends_direct_ssh_sessions_no_save_announced(direct: Scene, aws: Cloud) -> None:
    ssh, database = _start(direct, direct.web, 22, document=SSH), _start(direct, direct.web, TAKEN)
    AwsAccount.objects.filter(pk=direct.prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)

    assert tasks.end_all_withdrawn_sessions() == 1

    assert not ssm_session_active(aws, ssh) and ssm_session_active(aws, database)
    assert [entry.detail["reason"] for entry in sessions_terminated()] == [NOW_RECORDED]


def test_a_direct_ssh_session_started_as_the_account_becomes_recorded_is_ended_at_once_and_refused(
    direct: Scene, aws: Cloud, save_account: Callable[..., list[int]], start_raced: Callable[..., list[str]]
) -> None:
    """The account was read as direct, then the switch committed and its task looked for sessions
    before this one was on record: the start itself sees the switch and ends it."""

    def recorded_meanwhile() -> None:
        save_account(direct.prod, cli_sessions=AwsAccount.CliSessions.RECORD)
        assert services.sessions_end_withdrawn(account_id=direct.prod.pk).ended == []

    started = start_raced(recorded_meanwhile)
    with pytest.raises(RequestRuleError) as refused:
        services.grant_start_session(grant=_grant(direct.web), user=direct.alice, document=SSH, port=22, via="cli")

    assert refused.value.code == "conflict" and "became recorded" in str(refused.value)
    assert not ssm_session_active(aws, started[0])
    entries = LogbookEntry.objects.filter(request_id=direct.request.pk, action__startswith="session.").order_by("pk")
    assert [entry.action for entry in entries] == ["session.started", "session.terminated"]
    last = entries.last()
    assert last is not None and last.detail == {
        "session_id": started[0],
        "port": 22,
        "document": SSH,
        "via": "cli",
        "reason": NOW_RECORDED,
    }


def test_taking_the_region_off_ends_the_clis_own_sessions_there(
    scene: Scene, aws: Cloud, save_account: Callable[..., list[int]]
) -> None:
    forward = _start(scene, scene.web, KEPT)  # `passport forward`
    remote_desktop = _start(scene, scene.windows, 3389)  # `connect` to Windows
    proxy = _start(scene, scene.web, 22, document=SSH, via="cli-proxy")  # the proxy ends its own
    region = scene.web.region

    sent = save_account(scene.prod, regions=[name for name in scene.prod.managed_regions if name != region])

    assert sent == [scene.prod.pk]  # the task the save queued after its commit; the worker runs it:
    assert sorted(tasks.end_withdrawn_sessions(scene.prod.pk)["ended"]) == sorted([forward, remote_desktop])
    assert not ssm_session_active(aws, forward) and not ssm_session_active(aws, remote_desktop)
    assert ssm_session_active(aws, proxy)
    entries = {entry.detail["session_id"]: entry for entry in sessions_terminated()}
    assert set(entries) == {forward, remote_desktop}
    assert entries[forward].actor is None and entries[forward].request_id == scene.request.pk
    assert entries[forward].detail == {
        "session_id": forward,
        "port": KEPT,
        "document": FORWARD,
        "via": "cli",
        "reason": "region",
        "region": region,
    }
    with pytest.raises(RequestRuleError, match="no session is started there"):
        _start(scene, scene.web, KEPT)
    # Asked again, or an unrelated save: nothing is ended twice, nothing more announced.
    assert services.sessions_end_withdrawn(account_id=scene.prod.pk).ended == []
    assert save_account(scene.prod, name="Acme Production (renamed)") == []


def test_the_periodic_run_ends_the_clis_own_sessions_in_a_region_no_save_announced(scene: Scene, aws: Cloud) -> None:
    forward = _start(scene, scene.web, KEPT)
    account = AwsAccount.objects.get(pk=scene.prod.pk)
    AwsAccount.objects.filter(pk=scene.prod.pk).update(
        regions=[name for name in account.managed_regions if name != scene.web.region]
    )

    assert tasks.end_all_withdrawn_sessions() == 1

    assert not ssm_session_active(aws, forward)
    assert [entry.detail["reason"] for entry in sessions_terminated()] == ["region"]


# Sessions the person starts with the request's AWS credentials (`passport aws-credentials`), which
# the portal knows only from DescribeSessions: their owner is the request's role session.
AWS_CREDENTIALS = "aws-credentials"


def aws_credentials_ssm(scene: Scene, aws: Cloud) -> Any:
    """Alice's `passport aws-credentials` for her request, in the Session Manager client `aws ssm
    start-session` makes of them."""
    client = APIClient()
    client.force_authenticate(scene.alice)
    response = client.post(f"/api/requests/{scene.request.pk}/credentials/")
    assert response.status_code == 201, response.content
    body = response.json()
    return boto3.client(
        "ssm",
        endpoint_url=aws.endpoint_url,
        region_name=body["region"],
        aws_access_key_id=body["access_key_id"],
        aws_secret_access_key=body["secret_access_key"],
        aws_session_token=body["session_token"],
    )


def own_session(ssm: Any, instance: Instance, port: int, *, document: str = FORWARD) -> str:
    """`aws ssm start-session` with those credentials: nothing of it passes the portal."""
    started = ssm.start_session(
        Target=instance.instance_id, DocumentName=document, Parameters={"portNumber": [str(port)]}
    )
    return str(started["SessionId"])


def _someone_elses(scene: Scene, instance: Instance) -> str:
    """A session on the instance another principal of the account holds (here the portal's role itself)."""
    started = fleet_for(scene.prod).start_session(
        instance.instance_id, instance.region, FORWARD, {"portNumber": ["22"]}
    )
    return started["SessionId"]


def _listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The instances DescribeSessions is asked about from now on (each call, as made)."""
    asked: list[str] = []
    real = SessionsMixin.active_sessions

    def active_sessions(self: Any, instance_id: str, region: str) -> list[dict[str, str]]:
        asked.append(instance_id)
        return real(self, instance_id, region)

    monkeypatch.setattr(SessionsMixin, "active_sessions", active_sessions)
    return asked


def test_switching_to_recorded_ends_the_sessions_started_with_the_requests_aws_credentials(
    direct: Scene, aws: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = direct
    ssm = aws_credentials_ssm(scene, aws)
    own_ssh = own_session(
        ssm, scene.web, 22, document=SSH
    )  # `aws ssm start-session --document-name AWS-StartSSHSession`
    # A forward: to port 22 or 3389, Session Manager does not say, so it ends too.
    own_forward = own_session(ssm, scene.windows, 3389)
    portal_ssh = _start(scene, scene.web, 22, document=SSH)  # `passport connect` on the direct account
    database = _start(scene, scene.web, TAKEN)  # the portal's forward to a database: not SSH, stays
    proxy = _start(scene, scene.web, 22, document=SSH, via="cli-proxy")  # the recording proxy's own
    elses = _someone_elses(scene, scene.web)
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)
    asked = _listings(monkeypatch)

    result = services.sessions_end_withdrawn(account_id=scene.prod.pk)

    assert sorted(result.ended) == sorted([portal_ssh, own_ssh, own_forward]) and result.failed == []
    assert sorted(asked) == sorted([scene.web.instance_id, scene.windows.instance_id])  # once per instance
    for session_id in (portal_ssh, own_ssh, own_forward):
        assert not ssm_session_active(aws, session_id), session_id
    for session_id in (database, proxy, elses):
        assert ssm_session_active(aws, session_id), session_id
    entries = {entry.detail["session_id"]: entry for entry in sessions_terminated()}
    assert set(entries) == {portal_ssh, own_ssh, own_forward}
    assert entries[own_ssh].actor is None and entries[own_ssh].request_id == scene.request.pk
    assert entries[own_ssh].instance_ids.split() == [scene.web.instance_id]
    assert entries[own_ssh].detail == {
        "session_id": own_ssh,
        "document": SSH,
        "via": AWS_CREDENTIALS,
        "reason": NOW_RECORDED,
    }
    assert entries[own_forward].instance_ids.split() == [scene.windows.instance_id]
    assert entries[own_forward].detail["document"] == FORWARD
    assert entries[own_forward].detail["reason"] == NOW_RECORDED
    assert entries[portal_ssh].detail["via"] == "cli"
    # Asked again (the periodic run): nothing is ended twice.
    assert services.sessions_end_withdrawn(account_id=scene.prod.pk).ended == []
    assert len(sessions_terminated()) == 3


def test_sessions_started_with_aws_credentials_are_left_alone_on_a_direct_account(
    direct: Scene, aws: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = direct
    own = own_session(aws_credentials_ssm(scene, aws), scene.web, 22, document=SSH)
    asked = _listings(monkeypatch)

    assert services.sessions_end_withdrawn(account_id=scene.prod.pk).ended == []
    assert ssm_session_active(aws, own) and sessions_terminated() == []
    assert asked == []  # nothing was withdrawn: AWS is not asked


def test_sessions_started_with_aws_credentials_aws_would_not_list_end_at_the_next_run(
    direct: Scene, aws: Cloud
) -> None:
    scene = direct
    own = own_session(aws_credentials_ssm(scene, aws), scene.web, 22, document=SSH)
    portal_ssh = _start(scene, scene.web, 22, document=SSH)
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)

    with portal_role_denied(aws, scene.prod.account_id, "ssm:DescribeSessions"):
        refused = services.sessions_end_withdrawn(account_id=scene.prod.pk)

    # The portal's own, known from the Logbook, is ended all the same; the other is not known yet.
    assert refused.ended == [portal_ssh] and refused.failed == []
    assert ssm_session_active(aws, own)
    again = services.sessions_end_withdrawn(account_id=scene.prod.pk)
    assert again.ended == [own] and again.failed == []
    assert not ssm_session_active(aws, own)


def test_taking_the_region_off_ends_the_sessions_started_with_the_requests_aws_credentials(
    direct: Scene, aws: Cloud
) -> None:
    scene = direct
    ssm = aws_credentials_ssm(scene, aws)
    own_web, own_windows = own_session(ssm, scene.web, KEPT), own_session(ssm, scene.windows, 3389)
    portal = _start(scene, scene.windows, 3389)
    elses = _someone_elses(scene, scene.web)
    region = scene.web.region
    account = AwsAccount.objects.get(pk=scene.prod.pk)
    AwsAccount.objects.filter(pk=scene.prod.pk).update(
        regions=[name for name in account.managed_regions if name != region]
    )

    result = services.sessions_end_withdrawn(account_id=scene.prod.pk)

    assert sorted(result.ended) == sorted([own_web, own_windows, portal]) and result.failed == []
    for session_id in (own_web, own_windows, portal):
        assert not ssm_session_active(aws, session_id), session_id
    assert ssm_session_active(aws, elses)
    entries = {entry.detail["session_id"]: entry for entry in sessions_terminated()}
    assert entries[own_web].detail == {
        "session_id": own_web,
        "document": FORWARD,
        "via": AWS_CREDENTIALS,
        "reason": "region",
        "region": region,
    }
    assert entries[own_windows].instance_ids.split() == [scene.windows.instance_id]
    assert services.sessions_end_withdrawn(account_id=scene.prod.pk).ended == []


# What counts as AWS not answering: a FleetError, or a botocore error the fleet lets through
# (the Session Manager client made before DescribeSessions is called). A bug is neither: it is
# raised, not written down as AWS's refusal and tried again for ever.


@pytest.mark.parametrize("call", ["active_sessions", "terminate_session"])
def test_a_bug_behind_the_fleet_is_raised_not_taken_for_aws_refusing(
    scene: Scene, aws: Cloud, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    taken = _start(scene, scene.web, TAKEN)
    _withdraw(scene, [KEPT])

    def broken(self: Any, *args: Any) -> None:
        raise TypeError("a bug, not AWS")

    monkeypatch.setattr(SessionsMixin, call, broken)
    with pytest.raises(TypeError, match="a bug, not AWS"):
        services.sessions_end_withdrawn(account_id=scene.prod.pk)
    assert sessions_terminated() == []
    assert ssm_session_active(aws, taken)


def test_a_session_manager_client_that_cannot_be_made_is_aws_not_answering(
    direct: Scene, aws: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = direct
    own = own_session(aws_credentials_ssm(scene, aws), scene.web, 22, document=SSH)
    portal_ssh = _start(scene, scene.web, 22, document=SSH)
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)

    def no_client(self: Any, service: str, region: str, credentials: Any = None) -> Any:
        raise InvalidRegionError(region_name=region)  # a BotoCoreError, raised as the client is made

    with monkeypatch.context() as patched:
        patched.setattr(AwsClients, "_client", no_client)
        refused = services.sessions_end_withdrawn(account_id=scene.prod.pk)

    # Not listed: the portal's own (known from the Logbook) is tried and its failure on record; the
    # other is not known yet. Both end at the next run.
    assert refused.ended == [] and refused.failed == [portal_ssh]
    assert "TerminateSession" in sessions_terminated()[0].detail["error"]
    again = services.sessions_end_withdrawn(account_id=scene.prod.pk)
    assert sorted(again.ended) == sorted([portal_ssh, own]) and again.failed == []
