"""A plugin's output as Systems Manager hands it back, cut short by the SSM agent's rules.

ListCommandInvocations' ``Output`` is at most 2,500 bytes of standard output and error joined by
``ERROR_SEPARATOR``; what the agent cut there ends in ``OUTPUT_TRUNCATED`` / ``ERROR_TRUNCATED``,
and an output that was cut fills the 2,500 bytes. GetCommandInvocation's StandardOutputContent
is the first 24,000 bytes (a longer one ends in ``CONTENT_TRUNCATED``) and StandardErrorContent
the first 8,000 characters. Whatever was cut, or could have been, is said so (``truncated``):
nothing may read a list from it as if it were whole. An answer longer than these (an endpoint
that is not AWS's, or a hostile one) is cut to them here, so nothing after holds more. The host
writes the output, so a marker or separator in it proves nothing either way; the tests here only
ever err towards "cut".
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR_SEPARATOR = "\n----------ERROR-------\n"
OUTPUT_TRUNCATED = "\n---Output truncated---"
ERROR_TRUNCATED = "\n---Error truncated----"
CONTENT_TRUNCATED = "--output truncated--"
PLUGIN_OUTPUT_BYTES = 2_500
CONTENT_BYTES = 24_000
STDERR_CONTENT_CHARACTERS = 8_000


@dataclass(frozen=True)
class Output:
    stdout: str
    stderr: str
    truncated: bool


def _strip(text: str, marker: str) -> tuple[str, bool]:
    return (text[: -len(marker)], True) if text.endswith(marker) else (text, False)


def _cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    if len(text) * 4 <= limit:
        return text
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) <= limit:
        return text
    for back in range(4):  # a character is at most 4 bytes: one of these ends on its boundary
        try:
            return encoded[: limit - back].decode("utf-8", errors="surrogatepass")
        except UnicodeDecodeError:
            continue
    return encoded[:limit].decode("utf-8", errors="ignore")


def from_plugin_output(output: str) -> Output:
    """Standard output and error from ListCommandInvocations' ``Output``."""
    output = _cut_bytes(output, PLUGIN_OUTPUT_BYTES)
    stdout, _, stderr = output.partition(ERROR_SEPARATOR)
    stdout, out_cut = _strip(stdout, OUTPUT_TRUNCATED)
    stderr, err_cut = _strip(stderr, ERROR_TRUNCATED)
    truncated = (
        out_cut
        or err_cut
        # The agent's every cut leaves 2,499 or 2,500 bytes; U+FFFD for a stray byte only adds to it.
        or len(output.encode("utf-8", errors="surrogatepass")) >= PLUGIN_OUTPUT_BYTES - 1
        # A second separator or a marker inside: which part is which cannot be told.
        or ERROR_SEPARATOR in stderr
        or OUTPUT_TRUNCATED in output
        or ERROR_TRUNCATED in output
    )
    return Output(stdout=stdout, stderr=stderr, truncated=truncated)


def from_content(stdout: str, stderr: str) -> Output:
    """Standard output and error from GetCommandInvocation's StandardOutputContent / StandardErrorContent."""
    stdout, stderr = _cut_bytes(stdout, CONTENT_BYTES), stderr[:STDERR_CONTENT_CHARACTERS]
    stdout, out_cut = _strip(stdout, CONTENT_TRUNCATED)
    stderr, err_cut = _strip(stderr, CONTENT_TRUNCATED)
    truncated = (
        out_cut
        or err_cut
        or len(stdout.encode("utf-8", errors="surrogatepass")) >= CONTENT_BYTES - len(CONTENT_TRUNCATED)
        or len(stderr) >= STDERR_CONTENT_CHARACTERS
    )
    return Output(stdout=stdout, stderr=stderr, truncated=truncated)
