"""Reading output as Systems Manager cuts it: what was cut, or may have been, is said so."""

from __future__ import annotations

import pytest

from devcloud.runcommand import output as agent
from fleet.aws.output import from_content, from_plugin_output


@pytest.mark.parametrize(
    "stdout, stderr",
    [
        ("", ""),
        ("passport: ready\n", ""),
        ("", "boom\nfailed to run commands: exit status 3"),
        ("a" * 2_000, "e" * 400),
        ("rs-abcdefgh\n" * 207, ""),  # 2,484 bytes: still whole
    ],
)
def test_a_whole_plugin_output_reads_back_as_it_was_written(stdout: str, stderr: str) -> None:
    read = from_plugin_output(agent.plugin_output(stdout, stderr))
    assert (read.stdout, read.stderr, read.truncated) == (stdout, stderr, False)


@pytest.mark.parametrize(
    "stdout, stderr",
    [
        ("a" * 2_500, ""),
        ("a" * 3_000, "boom\n"),
        ("a" * 10, "e" * 3_000),
        ("a" * 3_000, "e" * 3_000),
        ("rs-abcdefgh-wxyz\n" * 200, ""),  # the listing of 200 users: the last line is half a name
        ("a" * 2_000, "e" * 476),  # exactly the space left: the agent cuts already
    ],
)
def test_a_plugin_output_the_agent_cut_is_truncated_and_its_parts_are_prefixes(stdout: str, stderr: str) -> None:
    read = from_plugin_output(agent.plugin_output(stdout, stderr))
    assert read.truncated
    assert stdout.startswith(read.stdout) and stderr.startswith(read.stderr)
    assert "truncated---" not in read.stdout + read.stderr


def test_a_host_printing_the_separator_or_a_marker_is_taken_for_cut() -> None:
    assert from_plugin_output(agent.plugin_output("x\n----------ERROR-------\ny", "z")).truncated
    assert from_plugin_output(agent.plugin_output("x\n---Output truncated---\nrs-abcdefgh", "")).truncated


@pytest.mark.parametrize(
    "stdout, stderr, truncated",
    [
        ("ok\n", "", False),
        ("x" * 23_000, "e" * 7_999, False),
        ("x" * 24_000, "", True),  # 23,980 and the agent's marker
        ("x" * 30_000, "", True),
        ("ok", "e" * 10_000, True),  # the first 8,000 characters of standard error
    ],
)
def test_get_command_invocations_content_says_when_it_was_cut(stdout: str, stderr: str, truncated: bool) -> None:
    read = from_content(agent.standard_output_content(stdout), agent.standard_error_content(stderr))
    assert read.truncated is truncated
    assert stdout.startswith(read.stdout) and stderr.startswith(read.stderr)
    if not truncated:
        assert (read.stdout, read.stderr) == (stdout, stderr)


def test_the_summary_of_a_cut_output_says_its_end_is_missing() -> None:
    from fleet import CommandResult

    cut = CommandResult(
        command_id="c-1", status="Failed", exit_code=1, stdout="", stderr="e\nhalf a li", truncated=True
    )
    assert cut.summary().endswith("half a li\n[the rest of the output was cut short by Systems Manager]")
    whole = CommandResult(command_id="c-1", status="Failed", exit_code=1, stdout="", stderr="boom")
    assert whole.summary() == "Run Command c-1 ended Failed (exit 1): boom"
