"""Polling a Run Command: soon at first, then at the configured interval."""

from __future__ import annotations

from itertools import islice
from typing import Any

from fleet.aws.runcommand import poll_delays


def test_polls_start_soon_and_double_up_to_the_configured_interval(settings: Any) -> None:
    settings.PASSPORT_RUN_COMMAND_POLL_SECONDS = 0.5
    assert list(islice(poll_delays(), 7)) == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


def test_an_interval_below_the_first_poll_is_used_from_the_start(settings: Any) -> None:
    settings.PASSPORT_RUN_COMMAND_POLL_SECONDS = 0.02
    assert list(islice(poll_delays(), 3)) == [0.02, 0.02, 0.02]
