"""The one fake fleet for unit tests, swapped in at the one place that picks the implementation.

Integration tests use the real gateway against devcloud; unit tests take the ``fake_fleet``
fixture, which stands in for Systems Manager, EC2 and IAM for every importer at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fleet import CommandResult, FleetAccount, FleetError, InstanceRecord
from fleet.scripts import ACCOUNT_SID_LINE
from fleet.selection import fleet_factory_set

Step = CommandResult | BaseException | Callable[..., CommandResult]
# What one Run Command for several instances gives back: each instance's result or error.
BatchStep = dict[str, CommandResult | FleetError] | BaseException


def ok(command_id: str = "cmd-ok") -> CommandResult:
    return CommandResult(command_id=command_id, status="Success", exit_code=0, stdout="passport: ready", stderr="")


# The SID the fake's Windows hosts give the account a create script made, unless a test says otherwise.
FAKE_ACCOUNT_SID = "S-1-5-21-1111111111-2222222222-3333333333-1001"


def created(command_id: str = "cmd-ok", *, sid: str = FAKE_ACCOUNT_SID) -> CommandResult:
    """A Windows create that succeeded, naming its account's SID as the script does."""
    stdout = f"{ACCOUNT_SID_LINE}{sid}\r\npassport: ready\r\n"
    return CommandResult(command_id=command_id, status="Success", exit_code=0, stdout=stdout, stderr="")


def failed(exit_code: int = 1, command_id: str = "cmd-failed", stderr: str = "useradd: cannot lock") -> CommandResult:
    return CommandResult(command_id=command_id, status="Failed", exit_code=exit_code, stdout="", stderr=stderr)


class FakeFleet:
    """Systems Manager as a test scripts it.

    ``run_script`` takes the next step given to ``will`` (success when none is left: for a script
    that reports the SID of the account it made, a Windows create, naming ``FAKE_ACCOUNT_SID``);
    ``run_script_batch`` the next given to ``will_batch`` (success on every instance when none is);
    ``describe`` answers from ``records`` (by region) or fails every region when ``failing``.
    Every call is kept in ``calls``, with the accounts asked about in ``accounts``.
    """

    def __init__(self) -> None:
        self.accounts: list[FleetAccount] = []
        self.calls: list[dict[str, Any]] = []
        self.steps: deque[Step] = deque()
        self.batch_steps: deque[BatchStep] = deque()
        self.batch_calls: list[dict[str, Any]] = []
        self.batch_heard: list[str] = []  # the instances whose result the last batch's caller was told of
        self.records: dict[str, list[InstanceRecord]] = {}
        self.failing = False
        self.handoffs: dict[str, str] = {}  # Parameter Store: what an instance could read now
        self.handoffs_seen: list[dict[str, str]] = []  # ... at each run_script
        self.describes: list[str] = []

    def will(self, *steps: Step) -> None:
        self.steps.extend(steps)

    def will_batch(self, *steps: BatchStep) -> None:
        self.batch_steps.extend(steps)

    def holds(self, records: list[InstanceRecord]) -> None:
        """EC2 lists ``records``, each in its own region."""
        self.records = {}
        for record in records:
            self.records.setdefault(record.region, []).append(record)

    def describe(self, region: str) -> list[InstanceRecord]:
        self.describes.append(region)
        if self.failing:
            raise FleetError(f"{region}: AccessDenied")
        return self.records.get(region, [])

    def put_handoff(self, name: str, value: str, region: str) -> None:
        self.handoffs[name] = value

    def delete_handoff(self, name: str, region: str) -> None:
        self.handoffs.pop(name, None)

    def active_sessions(self, instance_id: str, region: str) -> list[dict[str, str]]:
        return []  # Session Manager sessions are ended for real in tests/integration/test_session_end.py

    def run_script(self, **kw: Any) -> CommandResult:
        self.calls.append(kw)
        self.handoffs_seen.append(dict(self.handoffs))
        if self.steps:
            step = self.steps.popleft()
        elif f'"{ACCOUNT_SID_LINE}$accountSid"' in kw.get("script", ""):
            step = created(f"cmd-{len(self.calls)}")
        else:
            step = ok(f"cmd-{len(self.calls)}")
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, CommandResult):
            return step
        return step(**kw)

    def run_script_batch(self, **kw: Any) -> dict[str, CommandResult | FleetError]:
        self.batch_calls.append(kw)
        step = self.batch_steps.popleft() if self.batch_steps else {}
        if isinstance(step, BaseException):
            raise step
        command_id = f"cmd-batch-{len(self.batch_calls)}"
        results = {instance_id: step.get(instance_id, ok(command_id)) for instance_id in kw["instance_ids"]}
        self.batch_heard = []
        for instance_id, result in results.items():  # as each host finishes, in the order given
            if kw.get("on_result") is not None:
                kw["on_result"](instance_id, result)
                self.batch_heard.append(instance_id)
        return results


@pytest.fixture
def fake_fleet() -> Iterator[FakeFleet]:
    fake = FakeFleet()

    def factory(account: FleetAccount) -> FakeFleet:
        fake.accounts.append(account)
        return fake

    # The fake covers what unit tests reach; anything else (sessions, STS) is for the integration stack.
    previous = fleet_factory_set(factory)  # type: ignore[arg-type]
    try:
        yield fake
    finally:
        fleet_factory_set(previous)
