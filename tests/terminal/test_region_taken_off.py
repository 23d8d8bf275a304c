"""An admin takes an instance's region off its AWS account while a browser terminal runs on it: a new
session there is refused (``session.refused``, ``region``), and the open one ends too, told why, on
record as ``session.terminated`` (``region``, ``browser``, its Session Manager session) and
``terminal.ended``. At once after the save (``account_regions_taken_off``); and within seconds by the
terminal's own periodic read when no signal was sent (a queryset's update). Real ASGI, worker,
devcloud."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from accounts.models import AwsAccount, User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app.models import Grant
from requests_app.services.credentials import grant_start_session
from ssmchannel.documents import SSH_DOCUMENT
from terminal import services
from terminal.models import TerminalSession
from terminal.session_checks import SessionChecks
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import Screen, communicator, ready_grant, session_cookie


def _other_regions(account: AwsAccount, region: str) -> list[str]:
    return [name for name in account.managed_regions if name != region] or ["eu-west-1"]


def _save_without(region: str, prod: AwsAccount) -> None:
    """The admin's form, a script: any save of the model (its signal)."""
    account = AwsAccount.objects.get(pk=prod.pk)
    account.regions = _other_regions(account, region)
    account.save()


def _update_without(region: str, prod: AwsAccount) -> None:
    """SQL, a queryset's update(): no signal, nothing is told."""
    account = AwsAccount.objects.get(pk=prod.pk)
    AwsAccount.objects.filter(pk=prod.pk).update(regions=_other_regions(account, region))


def _new_session_refused(grant: Grant, user: User) -> str:
    fresh = Grant.objects.select_related("instance", "request__account", "request__requester").get(pk=grant.pk)
    with pytest.raises(RequestRuleError) as refused:
        grant_start_session(grant=fresh, user=user, document=SSH_DOCUMENT, port=22, via="browser")
    return str(refused.value)


def _run(prod: AwsAccount, take_off: Callable[[str, AwsAccount], None], *, within: float) -> tuple[Screen, Grant]:
    alice, _approver, _request, grant = ready_grant(prod)
    ticket = services.ticket_issue(user=alice, grant=grant)
    cookie = session_cookie(alice)
    region = grant.instance.region
    assert region in prod.managed_regions

    async def session() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        assert (await comm.connect(timeout=10))[0]
        screen = Screen(comm)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        await comm.send_to(bytes_data=b"echo before-$((40+2))\r")
        await screen.until(lambda s: b"before-42" in s.output, timeout=20, what="the shell answering")
        await database_sync_to_async(take_off)(region, prod)
        await screen.until(lambda s: s.closed_code is not None, timeout=within, what="the close after the change")
        await comm.disconnect(code=4000, timeout=15)
        return screen

    original = list(prod.regions)
    try:
        screen = async_to_sync(session)()
        assert "no session is started there" in _new_session_refused(grant, alice)
    finally:
        AwsAccount.objects.filter(pk=prod.pk).update(regions=original)
    return screen, grant


def _assert_ended_on_record(screen: Screen, grant: Grant) -> None:
    region = grant.instance.region
    said = services.region_taken_off_message(region)
    assert region in said
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": said}
    terminated = LogbookEntry.objects.get(action="session.terminated", request_id=grant.request_id)
    assert terminated.detail["reason"] == "region"
    assert terminated.detail["region"] == region
    assert terminated.detail["client"] == "browser"
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="the session record"
    )
    assert terminated.detail["session_id"] == record.ssm_session_id  # terminated with it
    assert record.end_reason == said
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=grant.request_id)
    assert ended.detail["reason"] == said


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_taking_the_region_off_ends_an_open_terminal_there_at_once(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"

    async def never_read(self: Any) -> bool:
        return True

    # Its own periodic read would end it too: left out, so only the save's message can.
    monkeypatch.setattr(SessionChecks, "_region_still_on", never_read)
    screen, grant = _run(prod, _save_without, within=15)
    _assert_ended_on_record(screen, grant)


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_a_region_taken_off_without_a_signal_ends_the_open_terminal_within_seconds(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    screen, grant = _run(prod, _update_without, within=15)
    _assert_ended_on_record(screen, grant)
