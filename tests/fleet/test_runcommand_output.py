"""Reading output as Systems Manager cuts it: what was cut, or may have been, is said so."""

from __future__ import annotations

import pytest

from devcloud.runcommand import output as agent
from fleet.aws.output import (
    CONTENT_BYTES,
    ERROR_SEPARATOR,
    PLUGIN_OUTPUT_BYTES,
    STDERR_CONTENT_CHARACTERS,
    from_content,
    from_plugin_output,
)
from fleet.aws.runcommand import _content_result
from fleet.interface import SUMMARY_MAX_CHARS, CommandResult


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


def test_an_answer_longer_than_get_command_invocation_keeps_is_cut_to_its_sizes() -> None:
    """A hostile endpoint may answer megabytes where SSM keeps 24,000 bytes of stdout and 8,000
    characters of stderr: what is kept is cut there, and said to be cut."""
    read = from_content("é" * 20_000, "x" * 5_000_000)
    assert len(read.stdout.encode()) <= CONTENT_BYTES and read.stdout == "é" * (CONTENT_BYTES // 2)
    assert read.stderr == "x" * STDERR_CONTENT_CHARACTERS
    assert read.truncated


def test_a_plugin_output_longer_than_list_command_invocations_keeps_is_cut_to_its_size() -> None:
    read = from_plugin_output("a" * 3_000_000 + ERROR_SEPARATOR + "e" * 10)
    assert read.stdout == "a" * PLUGIN_OUTPUT_BYTES and read.stderr == "" and read.truncated


@pytest.mark.parametrize("stderr", ["x" * 5_000_000, "line\n" * 1_000_000, ("y" * 100_000 + "\n") * 5])
def test_a_summary_is_a_few_kilobytes_whatever_the_output(stderr: str) -> None:
    """The summary goes into grant.last_error and the grant's Logbook entries, once per attempt."""
    result = CommandResult(command_id="c" * 10_000, status="F" * 10_000, exit_code=10**4000, stdout="", stderr=stderr)
    summary = result.summary()
    assert len(summary) <= SUMMARY_MAX_CHARS
    assert summary.endswith(stderr.strip()[-20:])  # the end of the output, where the error is


def test_a_run_command_answer_larger_than_ssm_keeps_is_cut_before_the_grant_and_logbook() -> None:
    invocation = {
        "Status": "Failed",
        "ResponseCode": 1,
        "StandardOutputContent": "",
        "StandardErrorContent": "x" * 5_000_000,
    }
    result = _content_result("cmd-1", invocation)
    assert len(result.stderr) == STDERR_CONTENT_CHARACTERS and result.truncated
    assert len(result.summary()) <= SUMMARY_MAX_CHARS
