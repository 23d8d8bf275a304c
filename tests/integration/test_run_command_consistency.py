"""AWS is eventually consistent: right after SendCommand, GetCommandInvocation may answer
InvocationDoesNotExist and ListCommandInvocations leave the command out. The fleet gateway
waits through both, with devcloud hiding each new command for a moment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accounts.models import AwsAccount
from fleet import CommandResult, fleet_for
from fleet.aws import runcommand
from requests_app.models import Instance
from tests.stack import Cloud

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db"), pytest.mark.timeout(60)]


@pytest.fixture
def slow_to_show(aws: Cloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The gateway's first poll waits three quarters of the commands' typical duration, learned
    # from the commands before (seconds, on a loaded machine): here it starts from nothing
    # learned, so its first polls come before the command shows.
    monkeypatch.setattr(runcommand, "command_durations", runcommand.CommandTimes())
    commands = aws.devcloud.runtime.commands
    commands.invisible_for = 0.3  # longer than the gateway's first polls
    try:
        yield
    finally:
        commands.invisible_for = 0.0


def test_a_command_not_yet_visible_is_waited_for(prod: AwsAccount, aws: Cloud, slow_to_show: None) -> None:
    commands = aws.devcloud.runtime.commands
    fleet = fleet_for(prod)
    hosts = list(Instance.objects.filter(account=prod, name__in=("web-1", "db-1")).order_by("name"))

    before = commands.not_yet_visible_answers
    one = fleet.run_script(
        instance_id=hosts[0].instance_id, region=hosts[0].region, platform="linux", script="echo one", comment="t"
    )
    assert one.ok and one.stdout == "one\n"
    assert commands.not_yet_visible_answers > before  # GetCommandInvocation did answer InvocationDoesNotExist

    before = commands.not_yet_visible_answers
    both = fleet.run_script_batch(
        instance_ids=[host.instance_id for host in hosts], region=hosts[0].region, platform="linux",
        script="echo both", comment="t",
    )  # fmt: skip
    assert commands.not_yet_visible_answers > before  # ListCommandInvocations did leave it out
    for result in both.values():
        assert isinstance(result, CommandResult) and result.ok and result.stdout == "both\n"
