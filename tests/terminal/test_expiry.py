"""terminal.expiry: the "Ends" line after an extension and the warnings at 10 and 2 minutes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from terminal.expiry import ExpiryWatch

NOW = datetime(2026, 12, 3, 14, 0, 0, tzinfo=UTC)


def _decoded(texts: list[str]) -> list[dict]:
    return [json.loads(text) for text in texts]


def test_the_end_time_is_sent_once_and_again_when_it_moves() -> None:
    watch = ExpiryWatch()
    end = NOW + timedelta(hours=1)
    assert _decoded(watch.update(end, NOW)) == [{"v": 1, "type": "ends", "at": "2026-12-03T15:00:00+00:00"}]
    assert watch.update(end, NOW + timedelta(seconds=5)) == []
    later = end + timedelta(minutes=30)
    assert _decoded(watch.update(later, NOW + timedelta(seconds=10))) == [
        {"v": 1, "type": "ends", "at": "2026-12-03T15:30:00+00:00"}
    ]
    assert watch.update(None, NOW) == []


def test_warnings_at_ten_and_two_minutes_each_once() -> None:
    watch = ExpiryWatch()
    end = NOW + timedelta(minutes=30)
    watch.update(end, NOW)
    assert watch.update(end, end - timedelta(minutes=10, seconds=1)) == []
    warned = _decoded(watch.update(end, end - timedelta(minutes=9, seconds=58)))
    assert warned == [
        {
            "v": 1,
            "type": "notice",
            "level": "warning",
            "message": "This access ends in 10 minutes, at 14:30:00 UTC. "
            "Extend the request on its page to keep working.",
            "at": "2026-12-03T14:30:00+00:00",
        }
    ]
    assert watch.update(end, end - timedelta(minutes=5)) == []
    second = _decoded(watch.update(end, end - timedelta(seconds=61)))
    assert [item["type"] for item in second] == ["notice"]
    assert second[0]["message"].startswith("This access ends in 2 minutes, at 14:30:00 UTC.")
    assert watch.update(end, end - timedelta(seconds=30)) == []
    assert watch.update(end, end + timedelta(seconds=1)) == []  # over: the request's ending closes the terminal


def test_opened_late_warns_once_with_the_nearer_mark_and_an_extension_rearms() -> None:
    watch = ExpiryWatch()
    end = NOW + timedelta(seconds=50)
    sent = _decoded(watch.update(end, NOW))
    assert [item["type"] for item in sent] == ["ends", "notice"]
    assert "ends in 1 minute," in sent[1]["message"]
    assert watch.update(end, NOW + timedelta(seconds=5)) == []
    # Extended by an hour: a new end time, no warning now, and both warnings again when due.
    extended = end + timedelta(hours=1)
    assert [item["type"] for item in _decoded(watch.update(extended, NOW + timedelta(seconds=6)))] == ["ends"]
    assert [item["type"] for item in _decoded(watch.update(extended, extended - timedelta(minutes=9)))] == ["notice"]
    assert [item["type"] for item in _decoded(watch.update(extended, extended - timedelta(minutes=1)))] == ["notice"]


def test_the_next_check_falls_on_the_next_mark() -> None:
    watch = ExpiryWatch()
    end = NOW + timedelta(minutes=10, seconds=2)
    assert watch.next_check_in(end, NOW, most=5) == 2
    assert watch.next_check_in(end, NOW, most=1) == 1
    assert watch.next_check_in(NOW + timedelta(minutes=2), NOW, most=5) == 5  # both marks reached
    assert watch.next_check_in(None, NOW, most=5) == 5
    # The end itself is a mark: the terminal ends there (terminal.session_checks).
    assert watch.next_check_in(NOW + timedelta(seconds=3), NOW, most=5) == 3
    assert watch.next_check_in(NOW - timedelta(seconds=3), NOW, most=5) == 5
