"""The IAM gate asked again for sessions already open. A Deny that conditions on an instance's tag
(``ssm:resourceTag``) starts to hold once the instance is tagged: the inventory sync sees the change
and the terminal of the person it refuses ends, on record as ``session.terminated`` (``iam_denied``),
while another person's terminal on the same instance stays. The periodic run asks once per person
and instance, keeps the answer a while, and ends nothing on a question AWS could not answer.
Real ASGI, worker, devcloud (its IAM simulator)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from core import dispatch
from requests_app.services import inventory_sync
from terminal import services
from terminal.models import SessionSlot, TerminalSession
from tests.factories import make_membership, make_user
from tests.stack import Cloud, account_admin_client, portal_role_denied, tag_as_account_admin, wait_for
from tests.terminal.helpers import Screen, active_request, communicator, ready_grant, session_cookie

QUARANTINE_TAG = "TestsQuarantine"
NO_QUARANTINED = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Deny",
            "Action": "ssm:StartSession",
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {"StringEquals": {f"ssm:resourceTag/{QUARANTINE_TAG}": "true"}},
        }
    ],
}
NO_SESSIONS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Deny", "Action": "ssm:StartSession", "Resource": "arn:aws:ec2:*:*:instance/*"}],
}


@pytest.fixture(autouse=True)
def iam_check_on(settings: Any) -> None:
    settings.PASSPORT_IAM_CHECK = True


@pytest.fixture
def alice_policy(aws: Cloud, prod: AwsAccount) -> Iterator[Any]:
    """Puts a policy on devcloud's IAM user alice (``put(document)``), taken off after the test."""
    iam = account_admin_client(aws, prod.account_id, "iam")
    put: list[str] = []

    def put_policy(document: dict[str, Any]) -> None:
        iam.put_user_policy(UserName="alice", PolicyName="TestsRecheck", PolicyDocument=json.dumps(document))
        put.append("TestsRecheck")

    yield put_policy
    if put:
        iam.delete_user_policy(UserName="alice", PolicyName="TestsRecheck")


@pytest.fixture
def quarantine(aws: Cloud, prod: AwsAccount) -> Iterator[Any]:
    """Tags web-1 as quarantined in devcloud (``tag()``); the tag is taken off and synced after the test."""
    tagged: list[bool] = []

    def tag() -> None:
        tag_as_account_admin(aws, prod.account_id, "web-1", {QUARANTINE_TAG: "true"})
        tagged.append(True)

    yield tag
    if tagged:
        account_admin_client(aws, prod.account_id, "ec2").delete_tags(
            Resources=[aws.instance_id("web-1")], Tags=[{"Key": QUARANTINE_TAG}]
        )
        inventory_sync(account=prod)


class _InThisProcess:
    """The worker process runs with the IAM gate off (PASSPORT_ENV=test): the task the sync queues
    runs here instead, where the test turned it on."""

    def delay(self, *args: Any) -> None:
        from workers import tasks

        tasks.iam_recheck_sessions(*args)


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_a_tag_an_iam_deny_conditions_on_ends_the_open_terminal_it_now_refuses(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Any, monkeypatch: Any, alice_policy: Any, quarantine: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setitem(dispatch._tasks, "iam_recheck_sessions", _InThisProcess())
    alice_policy(NO_QUARANTINED)  # nothing carries the tag yet: her sessions start
    alice, approver, access_request, grant = ready_grant(prod)
    bob = make_user("bob")
    make_membership(bob, prod, "admin")  # devcloud's bob: AmazonSSMFullAccess, no Deny
    bobs_request = active_request(prod, bob, approver)
    bobs_grant = bobs_request.grants.get()
    alice_ticket = services.ticket_issue(user=alice, grant=grant)
    bob_ticket = services.ticket_issue(user=bob, grant=bobs_grant)
    alice_cookie, bob_cookie = session_cookie(alice), session_cookie(bob)

    def tag_and_sync() -> None:
        quarantine()
        assert not inventory_sync(account=prod).errors

    async def sessions() -> tuple[Screen, Screen]:
        alices = communicator(grant.pk, alice_ticket, cookie=alice_cookie)
        bobs = communicator(bobs_grant.pk, bob_ticket, cookie=bob_cookie)
        assert (await alices.connect(timeout=10))[0]
        assert (await bobs.connect(timeout=10))[0]
        alice_screen, bob_screen = Screen(alices), Screen(bobs)
        await alice_screen.until(lambda s: s.message("ready"), timeout=60, what="alice's shell")
        await bob_screen.until(lambda s: s.message("ready"), timeout=60, what="bob's shell")
        await database_sync_to_async(tag_and_sync)()
        await alice_screen.until(lambda s: s.closed_code is not None, timeout=20, what="the close after the tag")
        await bobs.send_to(bytes_data=b"echo still-open\r")
        await bob_screen.until(lambda s: b"still-open\r\n" in s.output, timeout=20, what="bob's echo")
        assert bob_screen.closed_code is None
        await alices.disconnect(code=4000, timeout=15)
        await bobs.disconnect(code=4000, timeout=15)
        return alice_screen, bob_screen

    alice_screen, _ = async_to_sync(sessions)()
    closed = alice_screen.message("closed")
    assert closed is not None and "AWS IAM no longer allows you a session on this instance" in closed["reason"]
    terminated = LogbookEntry.objects.get(action="session.terminated", request_id=access_request.pk)
    assert terminated.detail["reason"] == "iam_denied"
    assert terminated.detail["client"] == "browser"
    assert "explicitly denies ssm:StartSession" in terminated.detail["refusal"]
    assert not LogbookEntry.objects.filter(action="session.terminated", request_id=bobs_request.pk).exists()
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="alice's record"
    )
    assert "AWS IAM no longer allows" in record.end_reason
    assert TerminalSession.objects.filter(grant=bobs_grant).exists()


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_one_question_per_person_and_instance_kept_a_while_and_a_policy_change_is_found(
    prod: AwsAccount, alice_policy: Any
) -> None:
    alice, _approver, _request, grant = ready_grant(prod)
    # Two CLI connections of hers on one instance: one pair, one question.
    SessionSlot.objects.create(user=alice, grant=grant)
    SessionSlot.objects.create(user=alice, grant=grant)

    first = services.open_sessions_iam_recheck()
    assert (first.asked, first.cached, first.denied, first.unavailable) == (1, 0, [], [])
    checked = LogbookEntry.objects.filter(action="iam.checked", detail__purpose="recheck")
    assert checked.count() == 1 and checked.get().detail["allowed"] is True

    again = services.open_sessions_iam_recheck()
    assert (again.asked, again.cached) == (0, 1)  # the answer kept: AWS not asked again

    alice_policy(NO_SESSIONS)
    found = services.open_sessions_iam_recheck(fresh=True)
    assert (found.asked, found.denied) == (1, [(alice.pk, grant.pk)])
    assert checked.count() == 2 and checked.latest("id").detail["allowed"] is False
    # Kept as refused: the next period tells the sessions again without asking AWS.
    assert services.open_sessions_iam_recheck().denied == [(alice.pk, grant.pk)]


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_a_gate_that_cannot_be_asked_ends_nothing_and_is_asked_again(prod: AwsAccount, aws: Cloud) -> None:
    alice, _approver, _request, grant = ready_grant(prod)
    SessionSlot.objects.create(user=alice, grant=grant)
    with portal_role_denied(aws, prod.account_id, "iam:SimulatePrincipalPolicy"):
        failed = services.open_sessions_iam_recheck()
        assert (failed.asked, failed.denied, failed.unavailable) == (1, [], [(alice.pk, grant.pk)])
        entry = LogbookEntry.objects.filter(action="iam.checked", detail__purpose="recheck").get()
        assert "SimulatePrincipalPolicy" in entry.detail["error"]
        # Nothing kept: the next period asks again.
        assert services.open_sessions_iam_recheck().asked == 1
    assert services.open_sessions_iam_recheck().denied == []
    assert SessionSlot.objects.filter(user=alice, grant=grant).exists()
    assert not LogbookEntry.objects.filter(action="session.terminated").exists()
