"""Local hosts are separate machines: their own users, homes, hostname and processes."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from devcloud.localhost import LocalHostError
from devcloud.server import DevCloud
from tests.devcloud.helpers import Aws, run


def test_a_user_added_on_one_host_exists_only_there(aws: Aws, ssm: Any, cloud: DevCloud) -> None:
    host_a, host_b = aws.launch_local("host-a"), aws.launch_local("host-b")
    username = f"rs-{uuid.uuid4().hex[:8]}"

    added = run(ssm, host_a, f"useradd --create-home --shell /bin/bash {username}")
    seen_on_a = run(ssm, host_a, f"id -un {username}", "ls /home")
    seen_on_b = run(ssm, host_b, f"id -un {username}")

    assert added["Status"] == "Success", added["StandardErrorContent"]
    assert seen_on_a["StandardOutputContent"] == f"{username}\n{username}\n"
    assert seen_on_b["Status"] == "Failed"
    assert "no such user" in seen_on_b["StandardErrorContent"]
    with pytest.raises(KeyError):
        pwd.getpwnam(username)
    assert not Path("/home", username).exists()
    assert (cloud.state_dir / "hosts" / host_a / "home" / username).is_dir()


def test_userdel_on_one_host_does_not_see_the_other_hosts_processes(aws: Aws, ssm: Any, cloud: DevCloud) -> None:
    # Both hosts hand out the same UID to their first new user; with one shared /proc,
    # a process of B's user would make userdel on A fail ("currently used by process").
    host_a, host_b = aws.launch_local("uid-a"), aws.launch_local("uid-b")
    for host in (host_a, host_b):
        assert run(ssm, host, "useradd -u 4242 twin")["Status"] == "Success"
    busy = cloud.run_in_host(host_b, ["runuser", "-u", "twin", "--", "sleep", "30"])
    try:
        removed = run(ssm, host_a, "userdel twin")
        processes_on_a = run(ssm, host_a, "ps -e -o comm=")
    finally:
        os.killpg(busy.pid, signal.SIGKILL)
        busy.wait()

    assert removed["Status"] == "Success", removed["StandardErrorContent"]
    assert "sleep" not in processes_on_a["StandardOutputContent"].split()


def test_each_host_has_its_own_tmp_var_tmp_and_dev_shm(aws: Aws, ssm: Any, cloud: DevCloud) -> None:
    # A removal deletes what a uid left in these places: on another host (or on this machine)
    # the same uid is someone else, whose files must stay.
    host_a, host_b = aws.launch_local("tmp-a"), aws.launch_local("tmp-b")
    name = f"own-{uuid.uuid4().hex[:8]}"
    places = [f"/tmp/{name}", f"/var/tmp/{name}", f"/dev/shm/{name}"]
    try:
        written = run(ssm, host_a, *(f"echo a > {place}" for place in places), "stat -c %a /tmp /var/tmp /dev/shm")
        on_b = run(ssm, host_b, *(f"test -e {place} && echo {place}; true" for place in places))
        again_on_a = run(ssm, host_a, f"cat {' '.join(places)}")

        assert written["Status"] == "Success", written["StandardErrorContent"]
        assert written["StandardOutputContent"].split() == ["1777", "1777", "1777"]
        assert on_b["StandardOutputContent"] == ""
        assert not any(Path(place).exists() for place in places)
        assert again_on_a["StandardOutputContent"] == "a\na\na\n"
    finally:
        for place in places:
            Path(place).unlink(missing_ok=True)


def test_run_in_host_enters_the_same_machine_as_run_command(aws: Aws, ssm: Any, cloud: DevCloud) -> None:
    host = aws.launch_local("shared-1")
    run(ssm, host, "useradd probe-user")

    process = cloud.run_in_host(host, "hostname; id -un probe-user", stdout=subprocess.PIPE, text=True)
    output, _ = process.communicate(timeout=10)

    assert output == "shared-1\nprobe-user\n"


def test_run_in_host_refuses_instances_that_are_not_local(aws: Aws, cloud: DevCloud) -> None:
    with pytest.raises(LocalHostError):
        cloud.run_in_host(aws.launch("remote-1"), "true")


def test_passport_state_on_one_host_is_not_on_another_or_on_this_machine(aws: Aws, ssm: Any, cloud: DevCloud) -> None:
    # On EC2 each instance has its own disk: the scripts' lock, grant registrations and
    # tombstones under /var/lib/passport must not be shared, or one host's lock would hold
    # the other's scripts and a grant registered on one would count as registered on both.
    host_a, host_b = aws.launch_local("state-a"), aws.launch_local("state-b")
    name = f"grant-{uuid.uuid4()}"

    written = run(ssm, host_a, "mkdir -p /var/lib/passport/grants", f"echo a > /var/lib/passport/grants/{name}")
    on_a = run(ssm, host_a, f"cat /var/lib/passport/grants/{name}")
    on_b = run(ssm, host_b, f"ls /var/lib/passport/grants/{name}")
    hold_the_lock = "exec 9>/var/lib/passport/lock; flock 9; echo locked; sleep 30"
    held = cloud.run_in_host(host_a, hold_the_lock, stdout=subprocess.PIPE)
    try:
        assert held.stdout is not None and held.stdout.readline() == b"locked\n"
        # A's lock is held; B takes its own at once.
        lock_on_b = run(ssm, host_b, "exec 9>/var/lib/passport/lock; flock -w 5 9 && echo free")
    finally:
        os.killpg(held.pid, signal.SIGKILL)
        held.wait()

    assert written["Status"] == "Success", written["StandardErrorContent"]
    assert on_a["StandardOutputContent"] == "a\n"
    assert on_b["Status"] == "Failed"
    assert not Path("/var/lib/passport/grants", name).exists()
    assert (cloud.state_dir / "hosts" / host_a / "var/lib/passport/grants" / name).is_file()
    assert lock_on_b["StandardOutputContent"] == "free\n", lock_on_b["StandardErrorContent"]


def test_hosts_given_cpus_run_their_commands_and_scripts_on_those_alone(aws: Aws, ssm: Any, cloud: DevCloud) -> None:
    # The benchmarks give the hosts cores of their own, as instances have: Run Command's
    # scripts and whatever runs in a host are pinned there, and nothing else is.
    host = aws.launch_local("pinned-1")
    last = max(os.sched_getaffinity(0))
    cloud.runtime.hosts.cpus = frozenset({last})
    try:
        script = run(ssm, host, "grep Cpus_allowed_list /proc/self/status")
        entered = cloud.run_in_host(host, "grep Cpus_allowed_list /proc/self/status", stdout=subprocess.PIPE, text=True)
        entered_out, _ = entered.communicate(timeout=10)
    finally:
        cloud.runtime.hosts.cpus = None
    unpinned = run(ssm, host, "grep Cpus_allowed_list /proc/self/status")

    assert script["StandardOutputContent"].split() == ["Cpus_allowed_list:", str(last)]
    assert entered_out.split() == ["Cpus_allowed_list:", str(last)]
    own = next(
        line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("Cpus_allowed_list")
    )
    assert unpinned["StandardOutputContent"].split() == own.split()
