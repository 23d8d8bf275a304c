"""Retransmission timing and ordering bookkeeping, with explicit times (a fake clock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssmchannel.reliability import OutgoingWindow, ReorderBuffer, RepeatLimiter, RttEstimator


class TestRttEstimator:
    def test_starts_at_200_ms(self) -> None:
        assert RttEstimator().rto == pytest.approx(0.2)

    def test_one_sample_by_hand(self) -> None:
        rtt = RttEstimator()  # srtt 100 ms, rttvar 0
        rto = rtt.observe(0.020)
        # rttvar = 3/4 * 0 + 1/4 * |0.100 - 0.020| = 0.020
        # srtt   = 7/8 * 0.100 + 1/8 * 0.020     = 0.090
        # rto    = 0.090 + max(0.010, 4 * 0.020)  = 0.170
        assert rtt.rttvar == pytest.approx(0.020)
        assert rtt.srtt == pytest.approx(0.090)
        assert rto == pytest.approx(0.170)

    def test_steady_fast_link_floors_at_granularity(self) -> None:
        rtt = RttEstimator()
        for _ in range(200):
            rtt.observe(0.001)
        assert rtt.srtt == pytest.approx(0.001, abs=1e-6)
        assert rtt.rto == pytest.approx(0.011, abs=1e-5)  # srtt + 10 ms clock granularity

    def test_capped_at_one_second(self) -> None:
        rtt = RttEstimator()
        for _ in range(50):
            rtt.observe(5.0)
        assert rtt.rto == 1.0
        assert rtt.loss_delay <= rtt.rto

    def test_jitter_raises_the_timeout(self) -> None:
        steady, jittery = RttEstimator(), RttEstimator()
        for i in range(100):
            steady.observe(0.050)
            jittery.observe(0.010 if i % 2 else 0.090)
        assert jittery.srtt == pytest.approx(steady.srtt, rel=0.2)
        assert jittery.rto > steady.rto + 0.1


class TestOutgoingWindow:
    def window_with(self, *times: float) -> OutgoingWindow:
        window = OutgoingWindow()
        for seq, sent in enumerate(times):
            window.mark_sent(window.add(seq, b"m%d" % seq), sent)
        return window

    def test_nothing_due_before_the_timeout(self) -> None:
        window = self.window_with(0.0, 0.0)
        assert window.due(0.199, rto=0.2, loss_delay=0.1) == []

    def test_timeout_resends_only_the_oldest(self) -> None:
        window = self.window_with(0.0, 0.0, 0.0)
        due = window.due(0.2, rto=0.2, loss_delay=0.1)
        assert [p.sequence_number for p in due] == [0]

    def test_resent_message_waits_a_full_timeout_again(self) -> None:
        window = self.window_with(0.0)
        (oldest,) = window.due(0.2, rto=0.2, loss_delay=0.1)
        window.mark_sent(oldest, 0.2)
        assert window.due(0.399, rto=0.2, loss_delay=0.1) == []
        assert window.due(0.4, rto=0.2, loss_delay=0.1) == [oldest]
        assert oldest.transmissions == 2

    def test_a_later_ack_marks_earlier_messages_lost_after_the_loss_delay(self) -> None:
        window = self.window_with(0.00, 0.01, 0.02, 0.03)
        window.acknowledge(0, 0.05)
        window.acknowledge(2, 0.06)  # 1 is missing; 3 was sent after 2, so it is not suspect
        assert window.due(0.10, rto=1.0, loss_delay=0.1) == []  # 1 has waited 90 ms
        assert [p.sequence_number for p in window.due(0.11, rto=1.0, loss_delay=0.1)] == [1]

    def test_ack_rtt_sample_follows_karns_rule(self) -> None:
        window = self.window_with(1.0, 1.0)
        assert window.acknowledge(0, 1.25) == pytest.approx(0.25)
        pending = window.oldest()
        assert pending is not None
        window.mark_sent(pending, 2.0)  # resent: its ack is ambiguous
        assert window.acknowledge(1, 2.1) is None
        assert window.acknowledge(1, 2.2) is None  # a repeated ack is ignored
        assert len(window) == 0

    def test_a_spurious_timeout_does_not_resend_the_window(self) -> None:
        # 0 timed out and was resent while 1..3 were on their way; then the ack of 0's first copy
        # came, and clean acks of the first copies of 1 behind it: the first copies get through.
        window = self.window_with(0.0, 0.01, 0.02, 0.03)
        (oldest,) = window.due(1.0, rto=1.0, loss_delay=0.1)
        window.mark_sent(oldest, 1.0)
        window.acknowledge(0, 1.01)
        window.acknowledge(1, 1.02)
        assert window.due(1.5, rto=10.0, loss_delay=0.1) == []
        window.acknowledge(3, 1.6)  # a clean ack of a later message still shows 2 lost
        assert [p.sequence_number for p in window.due(1.7, rto=10.0, loss_delay=0.1)] == [2]

    def test_after_a_resend_is_acked_and_nothing_else_the_rest_is_resent_together(self) -> None:
        # The reader dropped 0..3 (its buffer was full); 0 timed out, its resend was acked, and
        # no clean ack followed: 1..3 were dropped too, and go again together, not one per timeout.
        window = self.window_with(0.0, 0.01, 0.02, 0.03)
        (oldest,) = window.due(1.0, rto=1.0, loss_delay=0.1)
        window.mark_sent(oldest, 1.0)
        window.acknowledge(0, 1.05)
        assert window.due(1.1, rto=10.0, loss_delay=0.1) == []
        assert [p.sequence_number for p in window.due(1.16, rto=10.0, loss_delay=0.1)] == [1, 2, 3]

    def test_unsent_messages_are_due_at_once_in_order(self) -> None:
        window = OutgoingWindow()
        for seq in range(3):
            window.add(seq, b"")
        assert [p.sequence_number for p in window.due(0.0, rto=0.2, loss_delay=0.1)] == [0, 1, 2]
        assert len(window.due(0.0, rto=0.2, loss_delay=0.1, limit=2)) == 2

    def test_overtaken_message_found_when_first_sends_were_out_of_order(self) -> None:
        # After a publication pause, resends of kept messages and new sends can interleave:
        # 2 and 3 went out before 1. 3's ack shows 2 lost; 1 was sent after 3, so it is not.
        window = OutgoingWindow()
        pending = {seq: window.add(seq, b"m%d" % seq) for seq in range(4)}
        for seq in (0, 2, 3, 1):
            window.mark_sent(pending[seq], 0.0)
        window.acknowledge(3, 0.01)
        assert [p.sequence_number for p in window.due(0.1, rto=1.0, loss_delay=0.1)] == [0, 2]

    def test_bytes_count_the_frames_waiting(self) -> None:
        window = self.window_with(0.0, 0.0)
        assert window.bytes == 4  # b"m0", b"m1"
        window.acknowledge(0, 0.1)
        window.acknowledge(0, 0.1)  # a repeated ack changes nothing
        assert window.bytes == 2

    def test_duplicate_add_is_a_bug(self) -> None:
        window = OutgoingWindow()
        window.add(0, b"")
        with pytest.raises(ValueError):
            window.add(0, b"")


class TestReorderBuffer:
    def test_positions(self) -> None:
        buffer: ReorderBuffer[str] = ReorderBuffer(capacity=4, expected=3)
        assert [buffer.position(s) for s in (2, 3, 4)] == ["past", "next", "future"]

    def test_holds_until_the_gap_is_filled(self) -> None:
        buffer: ReorderBuffer[str] = ReorderBuffer(capacity=4)
        assert buffer.hold(2, "c")
        assert buffer.hold(1, "b")
        assert buffer.pop_next() is None
        buffer.advance()  # 0 arrived and was processed
        assert buffer.pop_next() == "b"
        assert buffer.pop_next() == "c"
        assert buffer.pop_next() is None
        assert buffer.expected == 3

    def test_capacity(self) -> None:
        buffer: ReorderBuffer[str] = ReorderBuffer(capacity=1)
        assert buffer.hold(5, "x")
        assert buffer.hold(5, "x")  # already held: fine
        assert not buffer.hold(6, "y")

    def test_byte_capacity(self) -> None:
        """Held items are bounded by their sizes too, so a few huge early messages cannot stand
        in for many small ones; taking them gives the room back."""
        buffer: ReorderBuffer[str] = ReorderBuffer(capacity=100, max_bytes=10)
        assert buffer.hold(1, "a", 6)
        assert not buffer.hold(2, "b", 5)  # 11 bytes: refused, the sender resends it
        assert buffer.hold(2, "b", 4)
        assert buffer.bytes == 10
        buffer.advance()
        assert buffer.pop_next() == "a" and buffer.bytes == 4


class TestRepeatLimiter:
    def test_each_number_is_answered_at_most_once_per_interval(self) -> None:
        limiter = RepeatLimiter()
        assert limiter.answer(5, 0.0, 1.0)
        assert not limiter.answer(5, 0.5, 1.0)
        assert limiter.answer(6, 0.5, 1.0)  # another number: its own first copy
        assert not limiter.answer(5, 1.0, 1.0)  # one interval on: still too soon
        assert not limiter.answer(6, 1.4, 1.0)
        assert limiter.answer(5, 2.0, 1.0)
        assert limiter.answer(6, 10.0, 1.0)  # after a quiet spell, at once

    def test_answers_per_interval_are_bounded(self) -> None:
        """Many different numbers copied at once (a flood of old numbers): at most ``capacity``
        answers per interval, and as little memory; the rest are resent and answered later."""
        limiter = RepeatLimiter(capacity=2)
        assert [limiter.answer(n, 0.0, 1.0) for n in (1, 2, 3)] == [True, True, False]
        assert limiter.answer(3, 1.0, 1.0)


@given(st.permutations(list(range(30))), st.lists(st.integers(0, 29), max_size=30))
def test_reorder_buffer_yields_each_item_once_in_order(order: list[int], duplicates: list[int]) -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(capacity=100)
    out: list[int] = []
    for seq in [*order, *duplicates]:
        position = buffer.position(seq)
        if position == "next":
            buffer.advance()
            out.append(seq)
            while (item := buffer.pop_next()) is not None:
                out.append(item)
        elif position == "future":
            buffer.hold(seq, seq)
    assert out == list(range(30))
