"""What a removed short-lived Linux user leaves behind goes to no one: its uid is never given
again, and what it owned in the places every user may write is deleted with it. Homes are the
user's alone. A real sshd in a devcloud host, the real create and removal scripts."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from accounts.models import AwsAccount, User
from fleet.scripts import UID_FIRST, UID_LAST, render_create, render_remove
from requests_app import services
from requests_app.models import AccessRequest, Grant, RequestStatus
from tests.factories import make_membership, make_user
from tests.sshd import LoopbackSshd, openssh_run
from tests.stack import Cloud, direct_active_request, wait_for

pytestmark = [pytest.mark.integration]


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    server = LoopbackSshd(aws.devcloud.runtime.hosts, aws.instance_id("web-1"), name="leftovers")
    server.start()
    yield server
    server.stop()


def _run_as(sshd: LoopbackSshd, tmp_path: Path, person: User, grant: Grant, command: str) -> str:
    name = f"k-{uuid.uuid4().hex[:8]}"
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    [line] = services.grant_issue_certificate(
        grant=grant, user=person, public_key=(tmp_path / f"{name}.pub").read_text()
    )
    cert = tmp_path / f"{name}.cert"
    cert.write_text(line + "\n")
    assert sshd.port is not None
    result = openssh_run(
        port=sshd.port, username=grant.username, identity_file=key, certificate_file=cert, command=command
    )
    assert result.ok, result.stderr
    return result.stdout


@pytest.mark.usefixtures("live_db", "worker")
def test_a_removed_users_uid_and_setuid_file_do_not_pass_to_the_next_persons_sudo_user(
    prod: AwsAccount, aws: Cloud, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    alice, bob, carol, approver = (make_user(n) for n in ("alice", "bob", "carol", "approver"))
    for person in (alice, bob, carol):
        make_membership(person, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    planted = f"/tmp/leftover-{uuid.uuid4().hex[:8]}"
    try:
        # carol and alice, both without sudo, at the same time on web-1.
        carol_req = direct_active_request(prod, carol, approver)
        alice_req = direct_active_request(prod, alice, approver)
        carol_grant, alice_grant = carol_req.grants.get(), alice_req.grants.get()
        out = _run_as(
            sshd, tmp_path, alice, alice_grant,
            f"id -u; stat -c %a ~; echo 'db password: hunter2' > ~/notes.txt; "
            f"cp /bin/bash {planted} && chmod 4755 {planted} && echo planted",
        )  # fmt: skip
        alice_uid, alice_home_mode, marker = out.split()
        assert marker == "planted"
        assert alice_home_mode == "700"
        peek = _run_as(sshd, tmp_path, carol, carol_grant, f"cat /home/{alice_grant.username}/notes.txt || echo DENIED")
        assert "hunter2" not in peek and "DENIED" in peek

        # alice's request completes: her user goes, and what her uid owned in /tmp with it.
        services.access_request_complete(access_request=alice_req, actor=alice)
        wait_for(lambda: AccessRequest.objects.get(pk=alice_req.pk).status == RequestStatus.COMPLETED, what="done")
        assert alice_grant.username not in aws.host_users("web-1")
        assert sshd.run(f"test -e {planted} && echo LEFT || echo GONE").strip() == "GONE"

        # bob, with sudo, gets a uid no one had before.
        bob_grant = direct_active_request(prod, bob, approver, admin_rights=True).grants.get()
        bob_uid = _run_as(sshd, tmp_path, bob, bob_grant, "id -u").strip()
        assert bob_uid != alice_uid
        assert UID_FIRST <= int(bob_uid) <= UID_LAST

        # alice, back without sudo, cannot become bob, nor root through bob's sudo.
        again_grant = direct_active_request(prod, alice, approver).grants.get()
        escalate = (
            f"id -u; sudo -n true 2>/dev/null && echo OWN-SUDO || echo NO-OWN-SUDO; "
            f"{planted} -p -c '/usr/bin/python3 -c \"import os; u=os.geteuid(); os.setreuid(u,u); "
            f'os.execvp(\\"sudo\\", [\\"sudo\\", \\"-n\\", \\"id\\"])"\' 2>&1; true'
        )
        result = _run_as(sshd, tmp_path, alice, again_grant, escalate)
        assert "NO-OWN-SUDO" in result
        assert "uid=0(root)" not in result
        assert result.split()[0] not in {alice_uid, bob_uid}
    finally:
        subprocess.run(["rm", "-f", planted], check=False)


def _username() -> str:
    return "rs-" + "".join("abcdefghijklmnopqrstuvwxyz234567"[b % 32] for b in uuid.uuid4().bytes[:8])


def test_uids_are_never_given_twice_and_an_interrupted_removal_finishes_on_its_rerun(
    aws: Cloud, sshd: LoopbackSshd
) -> None:
    """The scripts alone, on a host: no portal, no worker (nothing reconciles these users away)."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    first, second = _username(), _username()
    first_grant, second_grant = str(uuid.uuid4()), str(uuid.uuid4())
    tag = f"leftover-{uuid.uuid4().hex[:8]}"
    squatter = f"sq{uuid.uuid4().hex[:8]}"
    shared = [f"/tmp/{tag}", f"/var/tmp/{tag}", f"/dev/shm/{tag}"]

    def script(text: str) -> str:
        return sshd.run("bash", input=text, timeout=120)

    try:
        script(render_create(platform="linux", username=first, expires_at=expires, grant_uid=first_grant))
        uid, gid, mode = sshd.run(f"id -u {first}; id -g {first}; stat -c %a /home/{first}").split()
        assert UID_FIRST <= int(uid) <= UID_LAST
        assert gid == uid
        assert mode == "700"
        sshd.run(f"chmod 0755 /home/{first}")
        script(render_create(platform="linux", username=first, expires_at=expires, grant_uid=first_grant))
        assert sshd.run(f"stat -c %a /home/{first}").strip() == "700"  # a rerun closes it again

        # What the user leaves where everyone may write: a setuid shell, files, and a
        # directory that another user put a file in.
        sshd.run(
            f"runuser -u {first} -- sh -c 'cp /bin/bash /tmp/{tag} && chmod 4755 /tmp/{tag} && "
            f"echo x > /var/tmp/{tag} && echo x > /dev/shm/{tag} && mkdir -m 0777 /tmp/{tag}-dir'; "
            f"runuser -u nobody -- touch /tmp/{tag}-dir/theirs"
        )
        # A removal interrupted between userdel and its cleaning: the uid is free, the files are its.
        sshd.run(f"userdel --force {first}")
        assert sshd.run(f"stat -c %u /tmp/{tag}").strip() == uid

        # The next uid in line is taken meanwhile (by a group): the next user skips it too.
        sshd.run(f"groupadd -g {int(uid) + 1} {squatter}")
        script(render_create(platform="linux", username=second, expires_at=expires, grant_uid=second_grant))
        second_uid = int(sshd.run(f"id -u {second}"))
        assert second_uid > int(uid) + 1

        # The rerun of the removal finishes the job, and a further run is harmless.
        script(render_remove(platform="linux", username=first, grant_uid=first_grant))
        for path in shared:
            assert sshd.run(f"test -e {path} && echo LEFT || echo GONE").strip() == "GONE", path
        assert sshd.run(f"stat -c '%u %a' /tmp/{tag}-dir; ls /tmp/{tag}-dir").split() == ["0", "777", "theirs"]
        script(render_remove(platform="linux", username=first, grant_uid=first_grant))

        # A removal run in full ends the processes of the uid before and finds none after.
        sshd.run(f"runuser -u {second} -- sh -c 'sleep 600 >/dev/null 2>&1 &'")
        script(render_remove(platform="linux", username=second, grant_uid=second_grant))
        assert sshd.run(f"pgrep -u {second_uid} || pgrep -U {second_uid} || echo NONE").strip() == "NONE"
        assert sshd.run(f"getent passwd {second} {first} || echo NONE").strip() == "NONE"
    finally:
        sshd.run(
            f"rm -rf /tmp/{tag} /tmp/{tag}-dir /var/tmp/{tag} /dev/shm/{tag}; groupdel {squatter}; "
            f"userdel -rf {first}; userdel -rf {second}",
            check=False,
        )
