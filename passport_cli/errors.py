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
    # connect, forward: the request ended, or the forward's port was withdrawn or its account's sessions became
    # moderated (the reason is printed)
    ACCESS_ENDED = 7
    INTERRUPTED = 130  # Ctrl-C
    BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE, as coreutils under `| head`)
    TERMINATED = 143  # SIGTERM


EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  error (the portal or ssh failed, a file could not be written)
  2  usage error (wrong arguments)
  3  not signed in, or the sign-in expired or was revoked (connect and forward
     end then, saying so): run `passport auth login`
  4  not found or not active (request, instance, or nothing to connect to)
  5  refused by the portal (invalid input, not allowed, or not possible now)
  6  the portal could not be reached
  7  connect, forward: the session ended because the access ended (completed,
     expired, cancelled, the port taken off the account, or the account's
     sessions made moderated); the reason is printed
  130 interrupted (Ctrl-C)
  141 stdout was closed by its reader (e.g. `| head`); nothing is printed
  143 terminated (SIGTERM; 129 for SIGHUP); connect and forward end their ssh or forwarding first
  connect to Linux otherwise exits with ssh's own status (128+N when signal N ended ssh)
"""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised in the main thread, so that commands unwind (and close
    what they opened) as on Ctrl-C, also when SIGINT is ignored (nohup, CI runners)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class CliError(Exception):
    """``portal_error`` is the error name of an OAuth-style answer (RFC 8628's ``slow_down``...),
    ``retry_after`` the seconds of a Retry-After header, ``status`` the HTTP status of the portal's
    error answer; each only when the portal sent it."""

    def __init__(
        self,
        message: str,
        code: Exit = Exit.ERROR,
        *,
        portal_error: str = "",
        retry_after: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.portal_error = portal_error
        self.retry_after = retry_after
        self.status = status
