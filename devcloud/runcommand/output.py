"""What the SSM agent and the service keep of a plugin's output, byte for byte.

The rules of aws/amazon-ssm-agent, written anew here:

- GetCommandInvocation's StandardOutputContent: the agent's ``StringPrefix`` of standard output
  at 24,000 bytes. Output of fewer bytes is left alone; output of 24,000 bytes or more (24,000
  itself included) becomes its first 23,980 bytes followed by ``--output truncated--``. The agent
  cuts standard error by the same rule at the same 24,000 bytes, and the service then answers
  with at most the first 8,000 characters of it (the API's documented StandardErrorContent).
- ListCommandInvocations' plugin ``Output``: the agent's ``TruncateOutput`` shares 2,500 bytes
  between standard output and standard error, joined by ``\\n----------ERROR-------\\n`` (only
  when there is standard error). Standard error is kept before standard output; whatever is cut
  is marked with ``\\n---Output truncated---`` or ``\\n---Error truncated----``.

The agent slices bytes, so a cut can split a UTF-8 character; the service's JSON then carries
one U+FFFD for each byte that is no longer valid UTF-8, and so does devcloud.
"""

from __future__ import annotations

MAX_CONTENT_BYTES = 24_000
STDERR_CONTENT_CHARACTERS = 8_000
CONTENT_TRUNCATED_SUFFIX = b"--output truncated--"
PLUGIN_OUTPUT_LIMIT = 2_500
ERROR_TITLE = b"\n----------ERROR-------\n"
OUTPUT_TRUNCATED = b"\n---Output truncated---"
ERROR_TRUNCATED = b"\n---Error truncated----"


def raw(text: str) -> bytes:
    """The bytes a script wrote: its output is read with ``surrogateescape``, so nothing is lost."""
    return text.encode("utf-8", errors="surrogateescape")


def as_json_text(data: bytes) -> str:
    """Bytes as the service's JSON carries them: each byte that is not valid UTF-8 becomes U+FFFD."""
    escaped = data.decode("utf-8", errors="surrogateescape")
    return "".join("\ufffd" if "\udc80" <= char <= "\udcff" else char for char in escaped)


def string_prefix(data: bytes, max_length: int, suffix: bytes) -> bytes:
    """The agent's ``StringPrefix``: fewer than ``max_length`` bytes stay; longer ones are cut and marked."""
    if len(data) < max_length:
        return data
    if max_length > len(suffix):
        return data[: max_length - len(suffix)] + suffix
    return suffix[:max_length]


def truncate_output(stdout: bytes, stderr: bytes, capacity: int = PLUGIN_OUTPUT_LIMIT) -> bytes:
    """The agent's ``TruncateOutput``: standard output and error sharing ``capacity`` bytes."""
    title = ERROR_TITLE if stderr else b""
    available = capacity - len(title)
    if len(stdout) + len(stderr) < available:
        return stdout + title + stderr
    half = available // 2  # Go's integer division; ``available`` is positive
    if len(stdout) > half and len(stderr) > half:
        size = (available - len(ERROR_TRUNCATED) - len(OUTPUT_TRUNCATED)) // 2
        return stdout[:size] + OUTPUT_TRUNCATED + title + stderr[:size] + ERROR_TRUNCATED
    if len(stdout) <= half:
        size = available - len(ERROR_TRUNCATED)
        return stdout + title + stderr[: size - len(stdout)] + ERROR_TRUNCATED
    size = available - len(OUTPUT_TRUNCATED)
    return stdout[: size - len(stderr)] + OUTPUT_TRUNCATED + title + stderr


def standard_output_content(stdout: str) -> str:
    return as_json_text(string_prefix(raw(stdout), MAX_CONTENT_BYTES, CONTENT_TRUNCATED_SUFFIX))


def standard_error_content(stderr: str) -> str:
    kept = as_json_text(string_prefix(raw(stderr), MAX_CONTENT_BYTES, CONTENT_TRUNCATED_SUFFIX))
    return kept[:STDERR_CONTENT_CHARACTERS]


def plugin_output(stdout: str, stderr: str) -> str:
    return as_json_text(truncate_output(raw(stdout), raw(stderr)))
