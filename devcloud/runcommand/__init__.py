"""SSM Run Command with real per-instance state (``documents``, ``records``, ``store``).

moto marks every command Success at once and targets every instance of the region. Here
each invocation has its own life: a local host really runs ``AWS-RunShellScript``
(Pending -> InProgress -> Success/Failed/TimedOut/Cancelled, with its exit code and
output); another online Linux instance fails it, saying it is not a local host, rather
than succeed with an output no run gave; an online Windows instance (devcloud runs no
Windows) checks only the script's Parameter Store reads and succeeds with empty output (but for
the SID line of a script that reports the account it made, a SID made up);
an instance whose agent is not online keeps it Pending until the agent is back (it is delivered
then, when next read) or the command's total timeout (TimeoutSeconds plus the script's
executionTimeout: its ExpiresAfter) is over.
"""

from devcloud.runcommand.documents import (
    DEFAULT_EXECUTION_TIMEOUT,
    DOCUMENTS,
    MAX_EXECUTION_TIMEOUT,
    RunDocument,
    Script,
    parse_script,
)
from devcloud.runcommand.records import (
    CANCELLED,
    CANCELLING,
    DEFAULT_DELIVERY_TIMEOUT,
    FAILED,
    FINISHED,
    IN_PROGRESS,
    PENDING,
    PLUGIN_OUTPUT_LIMIT,
    STANDARD_CONTENT_LIMIT,
    SUCCESS,
    TIMED_OUT,
    Command,
    Invocation,
)
from devcloud.runcommand.store import CommandStore

__all__ = [
    "CANCELLED",
    "CANCELLING",
    "DEFAULT_DELIVERY_TIMEOUT",
    "DEFAULT_EXECUTION_TIMEOUT",
    "DOCUMENTS",
    "FAILED",
    "FINISHED",
    "IN_PROGRESS",
    "MAX_EXECUTION_TIMEOUT",
    "PENDING",
    "PLUGIN_OUTPUT_LIMIT",
    "STANDARD_CONTENT_LIMIT",
    "SUCCESS",
    "TIMED_OUT",
    "Command",
    "CommandStore",
    "Invocation",
    "RunDocument",
    "Script",
    "parse_script",
]
