"""Local hosts: EC2 instances tagged ``devcloud:local=true`` that are real machines here.

``hosts`` (LocalHosts), ``namespaces`` (PID 1, /etc, /home, /tmp... of a host), ``scripts`` (ScriptRun).

Each local host is a long-lived namespace on this computer: its own mount namespace (a
copy of /etc bound over /etc, its own /home, /var/lib/passport, /tmp, /var/tmp, /dev/shm and
/run/user), its own PID namespace and its own hostname.
Run Command scripts and the host's sshd (``devcloud.sshd``: a real OpenSSH server on a
loopback port, started on first need) all run inside it, so a user created by one script
is seen by the next and by sshd, while the real machine and the other local hosts keep
their own accounts. The network is this machine's: a port opened in one host is
127.0.0.1:port for everyone.

Why a PID namespace too: two hosts copied from the same /etc hand out the same UIDs, and
``userdel``/``pkill -u`` look at every process in /proc; with a shared /proc, cleaning a
user on host A would kill host B's sessions or fail because B's user is "logged in".
"""

from devcloud.localhost.hosts import LocalHosts
from devcloud.localhost.namespaces import ROOT_ENV, LocalHostError
from devcloud.localhost.scripts import STOPPED_EXIT_CODE, ScriptResult, ScriptRun

__all__ = ["ROOT_ENV", "STOPPED_EXIT_CODE", "LocalHostError", "LocalHosts", "ScriptResult", "ScriptRun"]
