"""The IAM gate asked again for sessions already open. A Deny that conditions on an instance's tag
(``ssm:resourceTag``) starts to hold once the instance is tagged: the inventory sync sees the change
and the terminal of the person it refuses ends, on record as ``session.terminated`` (``iam_denied``),
while another person's terminal on the same instance stays. The periodic run asks once per person
and instance, keeps the answer a while, and ends nothing on a question AWS could not answer; a
principal deleted from IAM is no such question but a refusal. A periodic run writes ``iam.checked``
only for a refusal, an error or a change from the last recorded answer.
Real ASGI, worker, devcloud (its IAM simulator)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from accounts.models import AwsAccount, Membership, User
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
    """Puts a policy on devcloud's IAM user alice (``put(document)``; ``put(None)`` takes it off), taken
    off after the test."""
    iam = account_admin_client(aws, prod.account_id, "iam")
    put: list[str] = []

    def put_policy(document: dict[str, Any] | None) -> None:
        if document is None:
            iam.delete_user_policy(UserName="alice", PolicyName="TestsRecheck")
            put.clear()
            return
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


class RecheckInThisProcess:
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
    monkeypatch.setitem(dispatch._tasks, "iam_recheck_sessions", RecheckInThisProcess())
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
        await bobs.send_to(bytes_data=b"echo still-open-$((6*7))\r")
        await bob_screen.until(lambda s: b"still-open-42" in s.output, timeout=20, what="bob's echo")
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


@pytest.fixture
def gone_principal(aws: Cloud, prod: AwsAccount) -> Iterator[Any]:
    """An IAM user of its own in prod with AmazonSSMFullAccess (``make(person)`` maps the person to it
    and returns ``delete()``, which deletes it from IAM as an administrator would); deleted after the
    test if still there."""
    iam = account_admin_client(aws, prod.account_id, "iam")
    name = f"tests-gone-{uuid.uuid4().hex[:8]}"
    policy = "arn:aws:iam::aws:policy/AmazonSSMFullAccess"
    made: list[bool] = []

    def delete() -> None:
        iam.detach_user_policy(UserName=name, PolicyArn=policy)
        iam.delete_user(UserName=name)
        made.clear()

    def make(person: User) -> Any:
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        made.append(True)
        iam.attach_user_policy(UserName=name, PolicyArn=policy)
        Membership.objects.filter(user=person, account=prod).update(principal_arn=arn)
        return delete

    yield make
    if made:
        delete()


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_a_principal_deleted_from_iam_ends_the_open_terminal(
    prod: AwsAccount, settings: Any, tmp_path: Any, gone_principal: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, _approver, access_request, grant = ready_grant(prod)
    delete = gone_principal(alice)
    ticket, cookie = services.ticket_issue(user=alice, grant=grant), session_cookie(alice)

    def delete_and_recheck() -> Any:
        delete()
        return services.open_sessions_iam_recheck()  # the periodic run

    async def session() -> tuple[Screen, Any]:
        alices = communicator(grant.pk, ticket, cookie=cookie)
        assert (await alices.connect(timeout=10))[0]
        screen = Screen(alices)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="alice's shell")
        result = await database_sync_to_async(delete_and_recheck)()
        # A principal that no longer exists is refused, as a new session is: not "AWS could not be asked".
        assert (result.denied, result.unavailable) == ([(alice.pk, grant.pk)], [])
        await screen.until(lambda s: s.closed_code is not None, timeout=20, what="the close after the deletion")
        await alices.disconnect(code=4000, timeout=15)
        return screen, result

    screen, _ = async_to_sync(session)()
    closed = screen.message("closed")
    assert closed is not None and "AWS IAM no longer allows you a session on this instance" in closed["reason"]
    terminated = LogbookEntry.objects.get(action="session.terminated", request_id=access_request.pk)
    assert terminated.detail["reason"] == "iam_denied" and terminated.detail["client"] == "browser"
    assert "no longer exists" in terminated.detail["refusal"]
    checked = LogbookEntry.objects.filter(action="iam.checked", detail__purpose="recheck").get()
    assert checked.detail["allowed"] is False and checked.detail["principal_gone"] is True


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_periodic_rechecks_record_only_refusals_errors_and_changes(
    prod: AwsAccount, aws: Cloud, settings: Any, alice_policy: Any
) -> None:
    settings.PASSPORT_IAM_RECHECK_CACHE_SECONDS = 0  # no answer kept: every period asks AWS
    alice, _approver, _request, grant = ready_grant(prod)
    SessionSlot.objects.create(user=alice, grant=grant)
    checked = LogbookEntry.objects.filter(action="iam.checked", detail__purpose="recheck")

    def period(*, fresh: bool = False) -> list[object]:
        """One run's new iam.checked entries, as (allowed, error) pairs."""
        last = checked.order_by("-id").values_list("id", flat=True).first() or 0
        assert services.open_sessions_iam_recheck(fresh=fresh).asked == 1
        return [(e.detail["allowed"], "error" in e.detail) for e in checked.filter(id__gt=last).order_by("id")]

    assert period() == [(True, False)]  # nothing recorded yet for the pair: the first answer is
    assert period() == []  # allowed again: asked, not written
    assert period() == []
    alice_policy(NO_SESSIONS)
    assert period() == [(False, False)]  # a refusal: written
    assert period() == [(False, False)]  # and each time it is given
    alice_policy(None)
    assert period() == [(True, False)]  # allowed after a refusal: a change, written
    assert period() == []
    with portal_role_denied(aws, prod.account_id, "iam:SimulatePrincipalPolicy"):
        assert period() == [(False, True)]  # an error: written
    assert period() == [(True, False)]  # allowed after an error: a change, written
    assert period(fresh=True) == [(True, False)]  # a tag change's recheck is always on record
    assert period() == []
