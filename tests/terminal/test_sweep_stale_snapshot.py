"""The orphan sweeps list every silent terminal (forward) once, then end them one by one, a
TerminateSession and a read of storage each. One whose web process beats again meanwhile was still
ended, its Session Manager session terminated under a live terminal: nothing read the heartbeat
again under the row's lock. Each is now checked again just before it is ended, on its locked row
(and a forward's end is an UPDATE conditional on its silence)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal import services
from terminal.models import ProxyForward, RecordingState, TerminalSession
from terminal.recorder import Heartbeat, terminal_heartbeats
from terminal.services.forwards import proxy_forward_open, proxy_forwards_heartbeat
from terminal.sweeps import forward_orphan_end, forwards_orphaned, terminal_orphan_finalise, terminals_orphaned
from tests.conftest import World
from tests.stack import Cloud
from tests.terminal.helpers import devcloud_ssm_session
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.usefixtures("live_db")


def _silent() -> datetime:
    return timezone.now() - timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS + 60)


def _silent_terminal(world: World, grant: Grant, ssm_session_id: str) -> TerminalSession:
    session = services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id=ssm_session_id, recording_path=""
    )
    TerminalSession.objects.filter(pk=session.pk).update(heartbeat_at=_silent())
    return session


def test_a_terminal_that_beat_again_after_the_sweep_listed_it_is_neither_terminated_nor_sealed(
    world: World, aws: Cloud
) -> None:
    grant = make_active_grant(world)
    ssm_session_id = devcloud_ssm_session(aws, grant)
    session = _silent_terminal(world, grant, ssm_session_id)
    (listed,) = terminals_orphaned()  # the sweep's list, read once
    terminal_heartbeats(beats=[Heartbeat(session.pk)])  # its web process was only slow

    assert terminal_orphan_finalise(session=listed) is None

    session.refresh_from_db()
    assert session.ended_at is None and session.end_reason == ""
    ssm = aws.devcloud.runtime.sessions.get(ssm_session_id)
    assert ssm is not None and ssm.status != "Terminated"
    assert not LogbookEntry.objects.filter(action="terminal.ended", detail__terminal_session=session.pk).exists()


def test_a_terminal_that_beat_again_is_not_sealed_for_the_sweep_though_its_session_was_ended(world: World) -> None:
    # Between the sweep's TerminateSession (or, without one, its check) and its sealing.
    grant = make_active_grant(world)
    session = _silent_terminal(world, grant, "")
    cutoff = timezone.now() - timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS)
    terminal_heartbeats(beats=[Heartbeat(session.pk)])

    kept = services.terminal_session_end(
        session=session, reason="stopped", bytes_in=0, bytes_out=0, recording_sha256="",
        recording_state=RecordingState.FAILED, by_person=False, silent_before=cutoff,
    )  # fmt: skip

    assert kept.ended_at is None
    assert TerminalSession.objects.get(pk=session.pk).ended_at is None


def test_a_forward_that_beat_again_after_the_sweep_listed_it_is_not_ended(world: World) -> None:
    grant = make_active_grant(world)
    forward_id = proxy_forward_open(grant=grant, user=world.requester, host="127.0.0.1", port=5432)
    ProxyForward.objects.filter(pk=forward_id).update(heartbeat_at=_silent())
    (listed,) = forwards_orphaned()
    assert proxy_forwards_heartbeat(forward_ids=[forward_id]) == 1

    assert not forward_orphan_end(forward=listed)

    assert ProxyForward.objects.get(pk=forward_id).ended_at is None
    assert not LogbookEntry.objects.filter(action="forward.closed", detail__forward=forward_id).exists()
