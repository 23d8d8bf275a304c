"""Terminal services that other apps call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Membership, User
from audit.models import LogbookEntry
from core.text import TRUNCATED
from requests_app import services as request_services
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, Instance, RequestStatus
from terminal import services, slots
from terminal.models import Client, RecordingState
from terminal.sealing import row_contradictions
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db


def test_ending_a_request_tells_its_terminals_only_when_one_may_be_open(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    grant = make_active_grant(world)
    access_request = AccessRequest.objects.get(pk=grant.request_id)
    assert not services.terminals_may_be_open(request_id=access_request.pk)
    ticket = services.ticket_issue(user=world.requester, grant=grant)
    assert services.ticket_consume(token=ticket, user=world.requester, grant_id=grant.pk)
    assert services.terminals_may_be_open(request_id=access_request.pk)
    with django_capture_on_commit_callbacks() as callbacks:
        request_services.access_request_complete(access_request=access_request, actor=world.requester)
    assert len(callbacks) == 2  # the removal of the users, and the open terminals


def test_the_terminal_is_unavailable_once_the_requester_is_no_longer_admin(world: World) -> None:
    grant = make_active_grant(world)
    assert services.terminal_unavailable_reason(grant=grant, user=world.requester) is None
    Membership.objects.filter(user=world.requester, account=world.prod).update(role=Membership.Role.OBSERVER)
    assert services.terminal_unavailable_reason(grant=grant, user=world.requester) == (
        "You have the Observer role on Acme Production (111111111111) now; "
        "only an Admin of the account may have access to its instances."
    )
    Membership.objects.filter(user=world.requester, account=world.prod).delete()
    reason = services.terminal_unavailable_reason(grant=grant, user=world.requester)
    assert reason is not None and reason.startswith("You have no role on Acme Production")


def test_every_end_reason_has_its_own_words_in_the_terminal_and_the_cli() -> None:
    """A revoked request's terminal says why it closed, as a completed or expired one's does."""
    from passport_cli.access_state import _ENDED_MESSAGES

    assert set(services.END_MESSAGES) == set(EndReason)
    assert set(_ENDED_MESSAGES) == {str(reason) for reason in EndReason}
    assert "no longer an Admin" in services.END_MESSAGES[EndReason.REVOKED]


def test_a_deactivated_persons_terminal_is_no_longer_allowed_and_says_why(world: World) -> None:
    """Deactivated behind the signals (a bulk update): the re-read after a session is recorded, and
    the words a terminal closes with when its sign-in check fails, still see it."""
    grant = make_active_grant(world)
    assert services.terminal_still_allowed(grant=grant)
    assert services.terminal_signed_out_reason(user_id=world.requester.pk) == services.SIGNED_OUT_MESSAGE
    User.objects.filter(pk=world.requester.pk).update(is_active=False)
    assert not services.terminal_still_allowed(grant=grant)
    assert services.terminal_signed_out_reason(user_id=world.requester.pk) == services.DEACTIVATED_MESSAGE


def test_ending_a_request_tells_its_cli_connections_without_a_shell(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    """A CLI proxy connection with only forwards, or idle (a ControlMaster), has no open session row:
    its place under the cap is what says it is open."""
    grant = make_active_grant(world)
    other = make_active_grant(world)
    slot_id = slots.session_slot_claim(user=world.requester, grant=grant, client=Client.CLI)
    assert services.terminals_may_be_open(request_id=grant.request_id)
    assert services.terminals_may_be_open_among(request_ids=[grant.request_id, other.request_id]) == {grant.request_id}
    with django_capture_on_commit_callbacks() as callbacks:
        request_services.access_request_complete(access_request=grant.request, actor=world.requester)
    assert len(callbacks) == 2  # the removal of the users, and the open connection
    slots.session_slot_release(slot_id=slot_id)
    assert not services.terminals_may_be_open(request_id=grant.request_id)


def test_a_request_past_its_end_time_has_ended_for_its_open_connections(world: World) -> None:
    """What a CLI connection's periodic check reads: the request's own words once it has ended, and
    "expired" once its end time has passed though the expiry sweep has not ended it yet."""
    active, completed, late, revoked = (make_active_grant(world).request for _ in range(4))
    request_services.access_request_complete(access_request=completed, actor=world.requester)
    AccessRequest.objects.filter(pk=late.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    AccessRequest.objects.filter(pk=revoked.pk).update(status=RequestStatus.COMPLETING, end_reason=EndReason.REVOKED)
    ids = [active.pk, completed.pk, late.pk, revoked.pk, 987654]
    assert services.requests_ended_messages(request_ids=ids) == {
        completed.pk: services.END_MESSAGES[EndReason.COMPLETED],
        late.pk: services.END_MESSAGES[EndReason.EXPIRED],
        revoked.pk: services.END_MESSAGES[EndReason.REVOKED],
        987654: "The access request has ended; this terminal is closed.",
    }
    User.objects.filter(pk=world.requester.pk).update(is_active=False)
    assert services.requests_ended_messages(request_ids=[revoked.pk]) == {revoked.pk: services.DEACTIVATED_MESSAGE}


@pytest.mark.parametrize("name", ["\x1b]0;owned\x07web-1", "web-1 $(reboot) \u202e", "<script>x</script>"])
def test_why_a_grant_no_longer_allows_a_new_channel_names_no_instance(world: World, name: str) -> None:
    """What the CLI proxy tells a client whose new command or forward it refuses. An instance's name is
    anyone's who may tag it: it is never part of the words."""
    grant = make_active_grant(world)
    Instance.objects.filter(pk=grant.instance_id).update(name=name)
    grant = Grant.objects.select_related("request", "instance").get(pk=grant.pk)
    assert services.terminal_refusal(grant=grant) is None

    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.REMOVING)
    not_ready = services.terminal_refusal(grant=grant)
    assert not_ready == "The user on this instance is not ready (it is removing); this terminal is closed."

    User.objects.filter(pk=world.requester.pk).update(is_active=False)
    assert services.terminal_refusal(grant=grant) == services.DEACTIVATED_MESSAGE

    AccessRequest.objects.filter(pk=grant.request_id).update(
        status=RequestStatus.COMPLETED, end_reason=EndReason.COMPLETED
    )
    ended = services.terminal_refusal(grant=grant)
    assert ended == services.END_MESSAGES[EndReason.COMPLETED]
    for words in (not_ready, ended):
        assert name not in words and grant.instance.instance_id not in words


# An instance sshd's channel-open refusal (quoted in the reason) and its exit-signal name: its own words.
HOSTILE = "administratively prohibited\r\npassport: access extended\x1b]52;c;ZWNobyBoaQ==\x07\u202e\x00"
SHOWN = "administratively prohibited\\x0d\\x0apassport: access extended\\x1b]52;c;ZWNobyBoaQ==\\x07\\u202e\\x00"


def test_what_the_far_end_said_reaches_the_logbook_escaped_and_cut(world: World) -> None:
    """A megabyte of refusal and of signal name: the entry quotes the start of each, made visible and
    marked as cut, and the row's end reason still agrees with the entry (terminal.sealing)."""
    grant = make_active_grant(world)
    session = services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id="s-1", recording_path="", unrecorded="no storage"
    )
    megabyte = "x" * 1_000_000
    services.terminal_session_end(
        session=session, reason=f"the instance refused the session: {HOSTILE}{megabyte}", bytes_in=0, bytes_out=0,
        recording_sha256="", recording_state=RecordingState.FAILED, exit_signal=f"TERM{HOSTILE}{megabyte}",
    )  # fmt: skip

    entry = LogbookEntry.objects.get(action="terminal.ended", request_id=grant.request_id)
    reason = entry.detail["reason"]
    assert reason.startswith(f"the instance refused the session: {SHOWN}xxx")
    assert reason.endswith("x" + TRUNCATED) and len(reason) == services.END_REASON_MAX_CHARS + len(TRUNCATED)
    signal = entry.detail["exit_signal"]
    assert signal.startswith(f"TERM{SHOWN[:50]}") and signal.endswith(TRUNCATED)
    assert len(signal) == services.EXIT_SIGNAL_MAX_CHARS + len(TRUNCATED)
    session.refresh_from_db()
    assert session.end_reason == reason[:256]
    assert row_contradictions(session, entry) == []
