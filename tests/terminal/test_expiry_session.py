"""An open terminal hears of an extension and warns before the end: ``ends`` and ``notice``
envelopes from terminal.session, never bytes for the shell or the recording."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from accounts.models import AwsAccount
from requests_app import services as request_services
from requests_app.models import AccessRequest, EndReason, Grant, RequestStatus
from terminal import session_checks
from terminal.models import TerminalSession
from terminal.services import END_MESSAGES
from terminal.session import ShellSession
from tests.factories import make_membership, make_user
from tests.stack import Cloud, WorkerProcess
from tests.terminal.helpers import ListBrowser, active_request, signed_in_key

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]

EXPIRED = END_MESSAGES[EndReason.EXPIRED]


def _at(browser: ListBrowser) -> list[str]:
    return [item["at"] for item in browser.envelopes if item["type"] == "ends"]


def _restart(worker: WorkerProcess) -> None:
    """The worker and its beat back, for the tests after this one."""
    worker.start()
    worker.start_scheduler()


def _notices(browser: ListBrowser) -> list[str]:
    return [item["message"] for item in browser.envelopes if item["type"] == "notice"]


def test_the_terminal_follows_an_extension_and_warns_at_ten_and_two_minutes(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(session_checks, "EXPIRY_CHECK_SECONDS", 0.3)
    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, alice, approver)
    grant = Grant.objects.get(request=access_request)
    browser = ListBrowser()
    session_key = signed_in_key(alice)

    def extend() -> None:
        fresh = AccessRequest.objects.get(pk=access_request.pk)
        request_services.access_request_extend(access_request=fresh, actor=alice, by=timedelta(minutes=30))

    def ends_in(left: timedelta) -> str:
        expires_at = timezone.now() + left
        AccessRequest.objects.filter(pk=access_request.pk).update(expires_at=expires_at)
        return expires_at.isoformat()

    async def drive() -> None:
        session = ShellSession(user=alice, grant_id=grant.pk, session_key=session_key, browser=browser)
        assert await session.load()
        session.start()
        await browser.until(lambda b: b.envelope("ready"), timeout=60, what="a logged-in shell")
        first_at = access_request.expires_at
        assert first_at is not None
        first = first_at.isoformat()
        await browser.until(lambda b: _at(b) == [first], timeout=5, what="the end time")
        assert _notices(browser) == []  # an hour left: nothing to warn of

        await sync_to_async(extend)()
        extended = (first_at + timedelta(minutes=30)).isoformat()
        await browser.until(lambda b: _at(b)[-1] == extended, timeout=5, what="the extended end time")

        nine = await sync_to_async(ends_in)(timedelta(minutes=9, seconds=30))
        await browser.until(lambda b: len(_notices(b)) == 1, timeout=5, what="the 10-minute warning")
        assert _at(browser)[-1] == nine
        assert _notices(browser)[0].startswith("This access ends in 10 minutes, at ")
        await sync_to_async(ends_in)(timedelta(seconds=100))
        await browser.until(lambda b: len(_notices(b)) == 2, timeout=5, what="the 2-minute warning")
        assert _notices(browser)[1].startswith("This access ends in 2 minutes, at ")
        await sync_to_async(ends_in)(timedelta(hours=1))  # so the scheduler does not end it under the test
        await session.end("done")

    async_to_sync(drive)()
    assert len(_notices(browser)) == 2
    # The warnings went to the page only, as envelopes: the shell never saw them (it would echo them).
    assert b"This access ends" not in browser.output
    assert TerminalSession.objects.get(grant=grant).ended_at is not None


def test_the_terminal_closes_at_the_end_time_when_the_expiry_sweep_has_not_run(
    prod: AwsAccount, aws: Cloud, worker: WorkerProcess, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker and its beat down (a deploy, a crash): the sweep does not end the request, so no
    ``terminal.close`` comes. The terminal ends itself once the end time has passed, as the CLI proxy
    does (terminal.proxy.upkeep), with the words an expired request's terminal closes with."""
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(session_checks, "EXPIRY_CHECK_SECONDS", 0.3)
    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, alice, approver)
    grant = Grant.objects.get(request=access_request)
    browser = ListBrowser()
    session_key = signed_in_key(alice)

    async def drive() -> None:
        session = ShellSession(user=alice, grant_id=grant.pk, session_key=session_key, browser=browser)
        assert await session.load()
        session.start()
        await browser.until(lambda b: b.envelope("ready"), timeout=60, what="a logged-in shell")
        await sync_to_async(worker.stop)()
        try:
            ended = timezone.now() - timedelta(minutes=5)
            await sync_to_async(AccessRequest.objects.filter(pk=access_request.pk).update)(expires_at=ended)
            await browser.until(lambda b: b.envelope("closed"), timeout=10, what="the terminal closed")
        finally:
            await session.end("done")
            await sync_to_async(_restart)(worker)

    async_to_sync(drive)()
    closed = browser.envelope("closed")
    assert closed is not None and closed["reason"] == EXPIRED
    record = TerminalSession.objects.get(grant=grant)
    assert record.ended_at is not None and record.end_reason == EXPIRED
    # Nothing ended the request itself: the terminal acted on the end time alone.
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE
