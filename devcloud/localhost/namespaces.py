"""A local host's namespace: its PID 1, its own /etc, /home, /var/lib/passport and /tmp, and root's environment."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devcloud.sshd import forget_machine_host_keys

# PID 1 of a host: binds the host's /etc, /home and /var/lib/passport (where Passport's scripts
# keep their lock, grant registrations and tombstones: each instance has its own, as on EC2),
# gives it its own /tmp, /var/tmp, /dev/shm and /run/user (a user's files there are the host's
# alone, as on EC2: a removal that deletes what a uid left there touches no other host, nor this
# machine; the host's own directory, where its commands run, stays reachable at its path),
# sets its hostname, reaps orphans
# (so a dead user's processes do not linger as zombies that userdel counts as "in use"),
# and exits when devcloud's end of its stdin closes, taking the whole namespace with it.
_NAMESPACE_INIT = """
import ctypes, os, signal, socket, subprocess, sys, threading
etc, home, passport_state, hostname, host_dir = sys.argv[1:6]
subprocess.run(["mount", "--bind", etc, "/etc"], check=True)
subprocess.run(["mount", "--bind", home, "/home"], check=True)
libc = ctypes.CDLL(None, use_errno=True)
def bind(fd, target):  # mount --bind of what fd names, even where its path now leads elsewhere
    if libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, 4096, None) != 0:  # MS_BIND
        raise OSError(ctypes.get_errno(), f"bind over {target}")
kept = os.open(host_dir, os.O_PATH)  # the host's directory, reached through this once /tmp is the host's
private = []
for inside, name in (("/tmp", "tmp"), ("/var/tmp", "var-tmp")):
    path = os.path.join(host_dir, name)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o1777)
    private.append((inside, os.open(path, os.O_PATH)))
for inside, fd in private:
    bind(fd, inside)
for inside, mode in (("/dev/shm", "1777"), ("/run/user", "755")):
    if os.path.isdir(inside):
        options = f"mode={mode},nosuid,nodev,size=64m"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", inside], check=True)
if host_dir.startswith(("/tmp/", "/var/tmp/")):
    os.makedirs(host_dir, exist_ok=True)
    bind(kept, host_dir)
# The mount point is made on this machine's disk (empty, root's); what the host writes goes to its own.
os.makedirs("/var/lib/passport", exist_ok=True)
subprocess.run(["mount", "--bind", passport_state, "/var/lib/passport"], check=True)
socket.sethostname(hostname)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
def exit_with_owner():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=exit_with_owner, daemon=True).start()
print("ready", flush=True)
while True:
    signal.sigwait({signal.SIGCHLD})
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
"""

ROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/bash",
    "LANG": "C.UTF-8",
}


class LocalHostError(RuntimeError):
    """A local host could not be created or entered."""


@dataclass
class _Namespace:
    holder: subprocess.Popen[bytes]  # the `unshare` process; its child is the host's PID 1
    init_pid: int


def _make_machine_files(host: Path, hostname: str) -> None:
    """Give a new host its own /etc (a copy of this machine's) and an empty /home."""
    host.mkdir(parents=True, exist_ok=True)
    staging = host / "etc.partial"
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(["cp", "-a", "/etc", str(staging)], check=True, capture_output=True)
    (staging / "hostname").write_text(hostname + "\n")
    forget_machine_host_keys(staging)  # the host's sshd makes its own
    # sudo and sshd resolve the hostname; without this line sudo warns on every call.
    with (staging / "hosts").open("a") as hosts_file:
        hosts_file.write(f"\n127.0.1.1\t{hostname}\n")
    (host / "home").mkdir(mode=0o755, exist_ok=True)
    staging.rename(host / "etc")


def _stop_namespace(namespace: _Namespace) -> None:
    # Killing PID 1 makes the kernel kill every process of the namespace.
    with contextlib.suppress(ProcessLookupError):
        os.kill(namespace.init_pid, signal.SIGKILL)
    namespace.holder.kill()
    namespace.holder.communicate()


def _child_pid(parent_pid: int) -> int:
    """The pid (as this machine sees it) of the only child of ``parent_pid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent_pid:
            return int(stat.parent.name)
    raise LocalHostError(f"the namespace holder {parent_pid} has no child")
