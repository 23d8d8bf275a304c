"""Polling a Run Command: soon at first, then at the configured interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import pytest
from django.conf import settings

from fleet import WAIT_SLACK_SECONDS, FleetError
from fleet.aws import AwsFleet, runcommand
from fleet.aws.runcommand import CommandDurations, CommandTimes, poll_delays


def test_polls_start_soon_and_double_up_to_the_configured_interval(settings: Any) -> None:
    settings.PASSPORT_RUN_COMMAND_POLL_SECONDS = 0.5
    assert list(islice(poll_delays(), 7)) == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


def test_an_interval_below_the_first_poll_is_used_from_the_start(settings: Any) -> None:
    settings.PASSPORT_RUN_COMMAND_POLL_SECONDS = 0.02
    assert list(islice(poll_delays(), 3)) == [0.02, 0.02, 0.02]


def test_once_commands_have_a_typical_duration_the_first_poll_waits_for_most_of_it(settings: Any) -> None:
    settings.PASSPORT_RUN_COMMAND_POLL_SECONDS = 0.5
    assert list(islice(poll_delays(0.4), 5)) == pytest.approx([0.3, 0.1, 0.2, 0.4, 0.5])
    # Short commands: never below the first poll of the default schedule.
    assert list(islice(poll_delays(0.04), 3)) == [0.05, 0.05, 0.1]
    # Long ones (AWS's own Run Command takes a second or more): the first poll still waits for
    # three quarters of it; from then on no wait is past the configured interval.
    assert list(islice(poll_delays(3.0), 3)) == [2.25, 0.5, 0.5]


def test_the_typical_duration_is_the_median_of_the_recent_commands() -> None:
    durations = CommandDurations()
    for seconds in (0.3, 0.5, 0.4):
        durations.record(seconds)
    assert durations.typical() is None  # too few to say
    durations.record(0.35)
    assert durations.typical() == pytest.approx(0.375)
    durations.record(300.0)  # one command stuck until its timeout
    assert durations.typical() == pytest.approx(0.4)
    for _ in range(CommandDurations.SIZE):
        durations.record(1.5)  # the recent ones only
    assert durations.typical() == pytest.approx(1.5)


class _Clock:
    """time.monotonic and time.sleep of the poll loop: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


class _Ssm:
    """GetCommandInvocation of a command that is final ``done_after`` seconds after it was sent."""

    def __init__(self, clock: _Clock, done_after: float) -> None:
        self.clock, self.done_at, self.calls = clock, clock.now + done_after, 0

    def get_command_invocation(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.clock.now + 1e-9 >= self.done_at:
            return {"Status": "Success", "ResponseCode": 0, "StandardOutputContent": "ok"}
        return {"Status": "InProgress"}


def _wait(clock: _Clock, done_after: float) -> tuple[int, float]:
    """Polls made and how late the command's end was seen."""
    ssm = _Ssm(clock, done_after)
    started = clock.now
    result = AwsFleet(None).wait_for(ssm, command_id="c-1", instance_id="i-1", timeout=60)  # type: ignore[arg-type]
    assert result.ok
    return ssm.calls, clock.now - started - done_after


def test_wait_for_polls_by_what_this_processs_commands_took(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.PASSPORT_RUN_COMMAND_POLL_SECONDS = 0.5
    clock = _Clock()
    monkeypatch.setattr(runcommand, "time", clock)
    monkeypatch.setattr(runcommand, "command_durations", CommandTimes())
    # Nothing known yet: 50, 100, 200, 400 ms: the end of a 0.6 s command is seen at 0.75 s.
    assert _wait(clock, 0.6) == (4, pytest.approx(0.15))
    for _ in range(CommandDurations.ENOUGH - 1):
        _wait(clock, 0.6)
    assert runcommand.command_durations.of("linux").typical() == pytest.approx(0.75)
    # Now the first poll comes at 0.5625 s (three quarters of 0.75) and the next 0.1875 s
    # later: two polls instead of four, and the end seen sooner.
    calls, late = _wait(clock, 0.6)
    assert calls == 2 and late <= 0.15 + 1e-9
    assert clock.sleeps[-2:] == [0.5625, 0.1875]


def test_a_command_as_long_as_the_typical_one_is_polled_twice_however_long_that_is(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """AWS's Run Command takes a second or more, a host busy with other scripts longer: the
    first poll waits for most of that, not for the interval between polls (which bounds only
    how late the end is seen once the typical time has passed)."""
    settings.PASSPORT_RUN_COMMAND_POLL_SECONDS = 0.5
    clock = _Clock()
    monkeypatch.setattr(runcommand, "time", clock)
    times = CommandTimes()
    for _ in range(CommandDurations.ENOUGH):
        times.of("linux").record(2.0)
    monkeypatch.setattr(runcommand, "command_durations", times)
    calls, late = _wait(clock, 2.0)
    assert calls == 2 and late == pytest.approx(0.0)
    assert clock.sleeps == [1.5, 0.5]
    # One that takes far longer is still seen within the configured interval of its end.
    calls, late = _wait(clock, 4.2)
    assert late <= 0.5 + 1e-9 and calls == 7


class _BatchSsm:
    """SendCommand and ListCommandInvocations of one command to several instances, each final
    ``done_after[instance]`` seconds after it was sent."""

    def __init__(self, clock: _Clock, done_after: dict[str, float]) -> None:
        self.clock = clock
        self.done_at = {instance_id: clock.now + after for instance_id, after in done_after.items()}
        self.cancelled: list[dict[str, Any]] = []

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        return {"Command": {"CommandId": "c-batch"}}

    def cancel_command(self, **kwargs: Any) -> None:
        self.cancelled.append(kwargs)

    def list_command_invocations(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "CommandInvocations": [
                {
                    "InstanceId": instance_id,
                    "Status": "Success" if self.clock.now + 1e-9 >= done_at else "InProgress",
                    "CommandPlugins": [{"ResponseCode": 0, "Output": f"done on {instance_id}"}],
                }
                for instance_id, done_at in self.done_at.items()
            ]
        }


def _batch_fleet(
    monkeypatch: pytest.MonkeyPatch, settings: Any, done_after: dict[str, float]
) -> tuple[AwsFleet, _Clock, _BatchSsm]:
    """The real fleet over ``_BatchSsm``, on the fake clock, with nothing known of past commands."""
    settings.PASSPORT_RUN_COMMAND_POLL_SECONDS = 0.5
    clock = _Clock()
    monkeypatch.setattr(runcommand, "time", clock)
    monkeypatch.setattr(runcommand, "command_durations", CommandTimes())
    ssm = _BatchSsm(clock, done_after)
    fleet = AwsFleet(None)  # type: ignore[arg-type]
    monkeypatch.setattr(fleet, "_client", lambda service, region: ssm)
    return fleet, clock, ssm


def test_each_host_of_a_batch_is_heard_of_when_it_is_done_not_when_the_last_is(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    fleet, clock, _ = _batch_fleet(monkeypatch, settings, {"i-fast": 1.0, "i-slow": 30.0})
    started, heard = clock.now, []

    results = fleet.run_script_batch(
        instance_ids=["i-fast", "i-slow"],
        region="us-east-1",
        platform="linux",
        script="true",
        comment="test",
        on_result=lambda instance_id, result: heard.append((instance_id, clock.now - started, result.ok)),
    )

    assert [(name, ok) for name, _, ok in heard] == [("i-fast", True), ("i-slow", True)]
    assert heard[0][1] <= 1.0 + 0.5 and heard[1][1] >= 30.0
    assert results["i-fast"].stdout == "done on i-fast"  # type: ignore[union-attr]


def test_a_host_that_runs_out_of_time_is_cancelled_and_reported_the_others_are_not(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    fleet, _, ssm = _batch_fleet(monkeypatch, settings, {"i-fast": 1.0, "i-stuck": 10_000.0})

    results = fleet.run_script_batch(
        instance_ids=["i-fast", "i-stuck"], region="us-east-1", platform="linux", script="true", comment="t", timeout=5
    )

    assert results["i-fast"].ok  # type: ignore[union-attr]
    assert isinstance(results["i-stuck"], FleetError) and "timed out" in str(results["i-stuck"])
    assert ssm.cancelled == [{"CommandId": "c-batch", "InstanceIds": ["i-stuck"]}]


def test_each_kind_of_command_times_its_own_polls(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Slow Windows scripts, or commands for several hosts (which end with their slowest), must
    not push back the first poll of a one-host Linux script."""
    settings.PASSPORT_RUN_COMMAND_POLL_SECONDS = 0.5
    clock = _Clock()
    monkeypatch.setattr(runcommand, "time", clock)
    times = CommandTimes()
    for _ in range(CommandDurations.ENOUGH):
        times.of("windows").record(20.0)
        times.of("linux", hosts=2).record(8.0)
    monkeypatch.setattr(runcommand, "command_durations", times)
    fleet = AwsFleet(None)  # type: ignore[arg-type]
    ssm = _Ssm(clock, 0.3)
    ssm.send_command = lambda **kwargs: {"Command": {"CommandId": "c-1"}}  # type: ignore[attr-defined]
    monkeypatch.setattr(fleet, "_client", lambda service, region: ssm)

    result = fleet.run_script(instance_id="i-1", region="us-east-1", platform="linux", script="true", comment="t")

    assert result.ok and clock.sleeps[0] == 0.05  # nothing known of one-host Linux scripts yet
    assert times.of("linux").typical() is None and len(clock.sleeps) <= 4


@pytest.mark.parametrize(
    "hosts, state, retryable",
    [
        (["i-gone"], "terminated", False),
        (["i-gone"], None, False),  # EC2 has no such instance
        (["i-gone"], "running", True),  # its agent is away: a later attempt may find it back
        (["i-gone", "i-fine"], "terminated", True),
    ],
)
def test_an_unknown_instance_fails_only_itself_for_good_and_only_when_it_is_gone(
    monkeypatch: pytest.MonkeyPatch, hosts: list[str], state: str | None, retryable: bool
) -> None:
    """SendCommand refuses a whole call for one unknown instance: named with others, each is
    tried again alone. Alone, the refusal is final only if EC2 says the instance is gone."""
    from botocore.exceptions import ClientError

    class _Refusing:
        def send_command(self, **kwargs: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "InvalidInstanceId", "Message": "i-gone"}}, "SendCommand")

        def describe_instances(self, **kwargs: Any) -> dict[str, Any]:
            if state is None:
                raise ClientError({"Error": {"Code": "InvalidInstanceID.NotFound"}}, "DescribeInstances")
            return {"Reservations": [{"Instances": [{"InstanceId": "i-gone", "State": {"Name": state}}]}]}

    fleet = AwsFleet(None)  # type: ignore[arg-type]
    monkeypatch.setattr(fleet, "_client", lambda service, region: _Refusing())
    results = fleet.run_script_batch(instance_ids=hosts, region="us-east-1", platform="linux", script="x", comment="t")
    assert {instance_id: result.retryable for instance_id, result in results.items()} == dict.fromkeys(  # type: ignore[union-attr]
        hosts, retryable
    )
    # Gone (the user with it) exactly when the refusal is for good: removal ends such a grant.
    assert {instance_id: result.instance_gone for instance_id, result in results.items()} == dict.fromkeys(  # type: ignore[union-attr]
        hosts, not retryable
    )
    if len(hosts) == 1:
        with pytest.raises(FleetError) as refused:
            fleet.run_script(instance_id="i-gone", region="us-east-1", platform="linux", script="x", comment="t")
        assert refused.value.retryable is retryable
        assert refused.value.instance_gone is (not retryable)


@pytest.mark.parametrize("hosts", [["i-there"], ["i-there", "i-too"]])
def test_a_refusal_for_good_of_an_instance_still_there_does_not_call_it_gone(
    monkeypatch: pytest.MonkeyPatch, hosts: list[str]
) -> None:
    """InvalidDocument meets every later attempt, but says nothing of the instance: the user on it
    is still there, and removal must not call it removed."""
    from botocore.exceptions import ClientError

    class _Refusing:
        def send_command(self, **kwargs: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "InvalidDocument", "Message": "no"}}, "SendCommand")

    fleet = AwsFleet(None)  # type: ignore[arg-type]
    monkeypatch.setattr(fleet, "_client", lambda service, region: _Refusing())
    with pytest.raises(FleetError) as refused:
        fleet.run_script(instance_id=hosts[0], region="us-east-1", platform="linux", script="x", comment="t")
    assert refused.value.retryable is False and refused.value.instance_gone is False
    results = fleet.run_script_batch(instance_ids=hosts, region="us-east-1", platform="linux", script="x", comment="t")
    assert all(not result.instance_gone for result in results.values())  # type: ignore[union-attr]


def _sent(expires_in: Any, command_id: str = "c-late") -> dict[str, Any]:
    """SendCommand's answer for a command requested at T0 that expires ``expires_in`` seconds later."""
    requested = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    expires = requested + timedelta(seconds=expires_in) if isinstance(expires_in, int) else expires_in
    return {"Command": {"CommandId": command_id, "RequestedDateTime": requested, "ExpiresAfter": expires}}


def test_a_command_is_waited_for_until_its_expires_after_plus_the_slack_within_bounds() -> None:
    delivery = runcommand.DELIVERY_TIMEOUT_SECONDS
    # AWS: ExpiresAfter is the delivery timeout plus the execution timeout; until then it may still
    # deliver the command to an agent back from away.
    assert runcommand._wait_seconds(_sent(delivery + 300), 300) == delivery + 300 + WAIT_SLACK_SECONDS
    assert runcommand._wait_seconds(_sent(delivery + 500), 300) == delivery + 500 + WAIT_SLACK_SECONDS
    # Never shorter than that documented total, nor longer than 5 minutes past it, whatever the answer says.
    assert runcommand._wait_seconds(_sent(5), 300) == delivery + 300 + WAIT_SLACK_SECONDS
    longest = delivery + 300 + runcommand.EXPIRY_ALLOWANCE_SECONDS + WAIT_SLACK_SECONDS
    assert runcommand._wait_seconds(_sent(10**9), 300) == longest
    for garbage in ("tomorrow", None, datetime(2026, 12, 8)):  # the last one naive: not comparable
        assert runcommand._wait_seconds(_sent(garbage), 300) == delivery + 300 + WAIT_SLACK_SECONDS
    assert runcommand._wait_seconds({"Command": "c-1"}, 300) == delivery + 300 + WAIT_SLACK_SECONDS


class _LateSsm(_BatchSsm):
    """A command whose agent was away: delivered, and done, ``done_after`` seconds after it was
    sent, while AWS still may (its ExpiresAfter, 60 s plus the execution timeout, is not over)."""

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        timeout = int(kwargs["Parameters"]["executionTimeout"][0])
        return _sent(kwargs["TimeoutSeconds"] + timeout, "c-batch")

    def get_command_invocation(self, **kwargs: Any) -> dict[str, Any]:
        (invocation,) = self.list_command_invocations(**kwargs)["CommandInvocations"]
        return {**invocation, "ResponseCode": 0, "StandardOutputContent": "done late"}


def test_a_command_delivered_late_within_its_expiry_is_waited_for_not_cancelled(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """Past the execution timeout plus the slack (the wait of before), short of ExpiresAfter plus it."""
    fleet, clock, _ = _batch_fleet(monkeypatch, settings, {})
    late = 5 + WAIT_SLACK_SECONDS + 20
    for run in ("one", "batch"):
        ssm = _LateSsm(clock, {"i-away": late})
        monkeypatch.setattr(fleet, "_client", lambda service, region, ssm=ssm: ssm)
        if run == "one":
            result: Any = fleet.run_script(
                instance_id="i-away", region="us-east-1", platform="linux", script="true", comment="t", timeout=5
            )
        else:
            result = fleet.run_script_batch(
                instance_ids=["i-away"], region="us-east-1", platform="linux", script="true", comment="t", timeout=5
            )["i-away"]
        assert not isinstance(result, FleetError) and result.ok, (run, result)
        assert ssm.cancelled == []


def test_a_command_past_its_expiry_plus_the_slack_is_cancelled_and_reported(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    fleet, clock, _ = _batch_fleet(monkeypatch, settings, {})
    ssm = _LateSsm(clock, {"i-away": 10_000.0})
    monkeypatch.setattr(fleet, "_client", lambda service, region: ssm)
    sent = clock.now
    with pytest.raises(FleetError, match="did not finish within 95 s"):
        fleet.run_script(
            instance_id="i-away", region="us-east-1", platform="linux", script="true", comment="t", timeout=5
        )
    assert ssm.cancelled == [{"CommandId": "c-batch", "InstanceIds": ["i-away"]}]
    assert runcommand.DELIVERY_TIMEOUT_SECONDS + 5 + WAIT_SLACK_SECONDS <= clock.now - sent < 100


def test_a_far_expires_after_keeps_the_wait_inside_the_brokers_visibility_timeout() -> None:
    # An ExpiresAfter hours out (AWS's answer, read as given only up to EXPIRY_ALLOWANCE_SECONDS over
    # the documented total): the task waiting on it is never handed to a second worker meanwhile.
    requested = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    answer = {"Command": {"RequestedDateTime": requested, "ExpiresAfter": requested + timedelta(hours=9)}}
    waited = runcommand._wait_seconds(answer, settings.PASSPORT_RUN_COMMAND_TIMEOUT)
    documented = runcommand.DELIVERY_TIMEOUT_SECONDS + settings.PASSPORT_RUN_COMMAND_TIMEOUT
    assert waited == documented + runcommand.EXPIRY_ALLOWANCE_SECONDS + WAIT_SLACK_SECONDS
    assert waited < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] / 2
