"""terminal.proxy.backpressure.ReadGate: a relayed channel is read only while nothing holds it. asyncssh's
pause_reading and resume_reading are one flag; the relay has several reasons to stop reading a side, and
one of them ending must not resume a channel another still holds."""

from __future__ import annotations

from terminal.proxy.backpressure import MODERATED, OPENING, PEER_FULL, RECORDING_BEHIND, PausesPeer, ReadGate


class Channel:
    """What asyncssh's channel does with pause_reading / resume_reading: one flag."""

    def __init__(self) -> None:
        self.paused = False
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.paused = True
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.paused = False
        self.calls.append("resume")


def test_the_channel_is_read_again_only_once_every_reason_has_ended() -> None:
    channel = Channel()
    gate = ReadGate(channel)
    gate.hold(OPENING)
    gate.hold(PEER_FULL)  # the instance's side filled while the early input was sent on
    gate.release(OPENING)  # opened: but the other side is still full
    assert channel.paused and gate.holds(PEER_FULL) and not gate.holds(OPENING)
    gate.hold(MODERATED)
    gate.release(PEER_FULL)
    assert channel.paused  # an approver has not joined yet
    gate.release(MODERATED)
    assert not channel.paused
    assert channel.calls == ["pause", "resume"]  # once each: no call while another reason held it


def test_releasing_a_reason_that_does_not_hold_changes_nothing() -> None:
    channel = Channel()
    gate = ReadGate(channel)
    gate.release(MODERATED)  # an approver joined a session that was never paused
    assert channel.calls == []
    gate.hold(RECORDING_BEHIND)
    gate.hold(RECORDING_BEHIND)
    gate.release(MODERATED)
    assert channel.paused
    gate.release(RECORDING_BEHIND)
    assert not channel.paused


def test_as_a_peer_its_pause_and_resume_are_the_other_side_being_full() -> None:
    channel = Channel()
    gate = ReadGate(channel)

    class Side(PausesPeer):
        def peer(self) -> ReadGate:
            return gate

    gate.hold(MODERATED)
    Side().pause_writing()
    Side().resume_writing()  # the other side drained: still moderated
    assert channel.paused and not gate.holds(PEER_FULL)


def test_reassert_pauses_again_a_channel_asyncssh_resumed_by_itself() -> None:
    channel = Channel()
    gate = ReadGate(channel)
    gate.hold(OPENING)
    channel.resume_reading()  # asyncssh, just after session_started
    gate.reassert()
    assert channel.paused
    gate.release(OPENING)
    gate.reassert()  # nothing holds it: left as it is
    assert not channel.paused
