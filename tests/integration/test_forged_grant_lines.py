"""A short-lived Linux user's own authorized_keys decides nothing: the removal of its last grant
takes the user, whatever lines it wrote there (naming another person's live grant, trusting a CA
of its own); whether a user still has live grants, and which lines it keeps, is read from
Passport's root-only state on the host (/var/lib/passport), which no other user can list.
A real sshd in a devcloud host; the scripts alone, then the portal, its worker and the reconciliation."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from accounts.models import AwsAccount
from fleet.scripts import render_create, render_remove
from requests_app import services
from requests_app.models import AccessRequest, GrantStatus, Instance, RequestStatus
from tests.factories import make_membership, make_user
from tests.integration.linux_host import host_sshd, username
from tests.sshd import LoopbackSshd, openssh_run
from tests.stack import Cloud, direct_active_request, wait_for

pytestmark = [pytest.mark.integration]


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    yield from host_sshd(aws, "forged")


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _forge(sshd: LoopbackSshd, user: str, line: str) -> None:
    """As ``user`` (no sudo): ``line`` appended to its own authorized_keys, and a process left running."""
    sshd.run(
        f'runuser -u {user} -- bash -c \'printf "%s\\n" "$1" >> ~/.ssh/authorized_keys; '
        f"setsid sleep 100000 >/dev/null 2>&1 < /dev/null &' _ '{line}'"
    )


def _self_signed_login(sshd: LoopbackSshd, tmp_path: Path, user: str, principal: str) -> bool:
    """Whether ``user`` logs in with a certificate for ``principal`` signed by its own CA (tmp_path/own_ca)."""
    key = tmp_path / f"k-{uuid.uuid4().hex[:8]}"
    _keygen(key)
    subprocess.run(["ssh-keygen", "-q", "-s", str(tmp_path / "own_ca"), "-I", "x", "-n", principal,
                    "-V", "-5m:+1h", str(key.with_suffix(".pub"))], check=True)  # fmt: skip
    assert sshd.port is not None
    login = openssh_run(port=sshd.port, username=user, identity_file=key,
                        certificate_file=key.with_name(f"{key.name}-cert.pub"), command="id -un")  # fmt: skip
    return login.ok


def test_removing_the_last_grant_of_a_user_removes_it_whatever_lines_it_wrote(
    aws: Cloud, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    passport_ca = _keygen(tmp_path / "passport_ca")
    own_ca = _keygen(tmp_path / "own_ca")
    mallory, victim = username(), username()
    mallory_grant, victim_grant = str(uuid.uuid4()), str(uuid.uuid4())

    def script(text: str) -> str:
        return sshd.run("bash", input=text, timeout=120)

    try:
        # A host an earlier version set up: Passport's state readable by every user.
        sshd.run("mkdir -p /var/lib/passport/grants && chmod 0755 /var/lib/passport /var/lib/passport/grants")
        for user, grant in ((mallory, mallory_grant), (victim, victim_grant)):
            script(render_create(platform="linux", username=user, expires_at=expires, grant_uid=grant,
                                 ca_public_keys=[passport_ca], forward_ports=[22]))  # fmt: skip
        # The create closed it: no user lists the host's grants (nor reads their lines).
        assert sshd.run("stat -c '%a %U' /var/lib/passport").split() == ["700", "root"]
        listing = sshd.run(f"runuser -u {mallory} -- ls /var/lib/passport/grants 2>&1 || echo DENIED")
        assert victim_grant not in listing and "DENIED" in listing

        # mallory knows the victim's grant all the same, and names it in a line trusting her own CA;
        # and copies, byte for byte, the line Passport wrote for the victim.
        victim_line = sshd.run(f"grep -F 'grant-{victim_grant}' /home/{victim}/.ssh/authorized_keys").strip()
        _forge(sshd, mallory, f'cert-authority,principals="grant-{victim_grant}",no-port-forwarding {own_ca}')
        _forge(sshd, mallory, victim_line)

        # Her only grant is removed, as when her request completes: her user goes, and everything with it.
        out = script(render_remove(platform="linux", username=mallory, grant_uid=mallory_grant))
        assert f"{mallory} removed" in out
        assert not _self_signed_login(sshd, tmp_path, mallory, f"grant-{victim_grant}")
        assert sshd.run(f"getent passwd {mallory} || echo GONE").strip() == "GONE"
        # Nothing of her grant stays in Passport's state; the victim's is untouched.
        assert sshd.run("ls /var/lib/passport/grants /var/lib/passport/keys").split().count(mallory_grant) == 0
        assert sshd.run(f"cat /var/lib/passport/grants/{victim_grant}").splitlines()[0] == victim
        assert sshd.run(f"cat /home/{victim}/.ssh/authorized_keys").strip() == victim_line
    finally:
        for user in (mallory, victim):
            sshd.run(f"pkill -KILL -u {user}; userdel -rf {user}", check=False)
        for grant in (mallory_grant, victim_grant):
            sshd.run(f"rm -f /var/lib/passport/grants/{grant} /var/lib/passport/keys/{grant}", check=False)


def test_a_removal_without_its_grant_or_of_a_gone_user_leaves_none_of_its_grants_state(
    aws: Cloud, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    """The reconciliation's removal (no grant named) and a rerun after the user is gone both clear
    every grant of the user from /var/lib/passport: a stale one would count as live later."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    passport_ca = _keygen(tmp_path / "passport_ca")
    first, second = username(), username()
    grants = {first: [str(uuid.uuid4()), str(uuid.uuid4())], second: [str(uuid.uuid4())]}

    def script(text: str) -> str:
        return sshd.run("bash", input=text, timeout=120)

    def state(grant: str) -> str:
        return sshd.run(f"ls /var/lib/passport/grants/{grant} /var/lib/passport/keys/{grant} 2>/dev/null || true")

    try:
        for user, user_grants in grants.items():
            for grant in user_grants:
                script(render_create(platform="linux", username=user, expires_at=expires, grant_uid=grant,
                                     ca_public_keys=[passport_ca]))  # fmt: skip
        script(render_remove(platform="linux", username=first))  # as the reconciliation removes an orphan
        assert sshd.run(f"getent passwd {first} || echo GONE").strip() == "GONE"
        assert [state(grant) for grant in grants[first]] == ["", ""]

        # A user gone already (a removal interrupted after userdel): its grant's removal clears the rest.
        sshd.run(f"userdel -rf {second}")
        script(render_remove(platform="linux", username=second, grant_uid=grants[second][0]))
        assert state(grants[second][0]) == ""
    finally:
        for user, user_grants in grants.items():
            sshd.run(f"userdel -rf {user}", check=False)
            for grant in user_grants:
                sshd.run(f"rm -f /var/lib/passport/grants/{grant} /var/lib/passport/keys/{grant}", check=False)


@pytest.mark.usefixtures("live_db", "worker")
def test_a_completed_requests_user_is_gone_whatever_its_user_wrote(
    prod: AwsAccount, aws: Cloud, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    """The portal says the grant is removed, and it is: mallory (no sudo) keeps no user, process or
    login of her own on web-1, though she keeps a request for web-1 pending (which the
    reconciliation counts as accounting for her user)."""
    mallory, victim, approver = make_user("mallory"), make_user("victim"), make_user("approver")
    for person in (mallory, victim):
        make_membership(person, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    victim_grant = direct_active_request(prod, victim, approver).grants.get()
    mal_req = direct_active_request(prod, mallory, approver)
    user = mal_req.grants.get().username
    uid = sshd.run(f"id -u {user}").strip()

    # On the host, as mallory: a line naming the victim's live grant, trusting her own CA.
    own_ca = _keygen(tmp_path / "own_ca")
    listing = sshd.run(f"runuser -u {user} -- ls /var/lib/passport/grants 2>&1 || echo DENIED")
    assert str(victim_grant.uid) not in listing and "DENIED" in listing
    _forge(sshd, user, f'cert-authority,principals="grant-{victim_grant.uid}",no-port-forwarding {own_ca}')

    services.access_request_complete(access_request=mal_req, actor=mallory)
    wait_for(lambda: AccessRequest.objects.get(pk=mal_req.pk).status == RequestStatus.COMPLETED, what="completed")
    assert mal_req.grants.get().status == GrantStatus.REMOVED
    services.access_request_create(
        requester=mallory, account=prod, instances=list(Instance.objects.filter(account=prod, name="web-1")),
        reason="again",
    )  # fmt: skip
    services.reconcile_account(account=prod)

    assert user not in aws.host_users("web-1")
    assert not _self_signed_login(sshd, tmp_path, user, f"grant-{victim_grant.uid}")
    assert sshd.run(f"pgrep -u {uid} || echo NONE").strip() == "NONE"
