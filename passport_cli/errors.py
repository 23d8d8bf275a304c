"""Exit codes and the one error type commands raise."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    ERROR = 1  # anything else: the portal failed, ssh failed, a local file could not be written
    USAGE = 2  # wrong arguments (argparse uses 2 as well)
    AUTH = 3  # not signed in, or the token expired or was revoked
    NOT_FOUND = 4  # no such request or instance, or nothing active to connect to
    REFUSED = 5  # the portal refused: invalid input, not allowed, or not possible now
    UNREACHABLE = 6  # the portal could not be reached
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  error (the portal or ssh failed, a file could not be written)
  2  usage error (wrong arguments)
  3  not signed in, or the sign-in expired: run `passport auth login`
  4  not found or not active (request, instance, or nothing to connect to)
  5  refused by the portal (invalid input, not allowed, or not possible now)
  6  the portal could not be reached
  130 interrupted (Ctrl-C)
"""


class CliError(Exception):
    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
