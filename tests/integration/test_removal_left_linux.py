"""A Linux removal that finds the grant's user out of Passport's group (``passport-users``).

A user with sudo may take itself out of the group the removal goes by. The grant made that account
(it was ready once), so its removal no longer says "left untouched" and exits 0 (the portal would
call the grant removed while the user, perhaps with sudo, stayed): as the Windows removal does,
the account goes through every step short of its deletion (its Passport sudoers files and records
gone, locked and expired, its processes ended) and the script ends with ``REMOVAL_REFUSED_EXIT_CODE``.
An account of the name the grant never made is still someone else's, left untouched. The real
scripts in a devcloud host."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterator

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet.linux_scripts import LINUX_LEFT
from fleet.scripts import MARKER_GROUP, REMOVAL_REFUSED_EXIT_CODE, render_remove, render_remove_per_host
from requests_app import services
from requests_app.models import AccessRequest, GrantStatus, RequestStatus
from requests_app.services.provisioning.remove import NEEDS_OPERATOR_PREFIX
from tests.factories import make_membership, make_user
from tests.integration.linux_host import exit_and_output, host_sshd, linux_create, run_script, running, username
from tests.sshd import LoopbackSshd
from tests.stack import Cloud, direct_active_request, wait_for

pytestmark = [pytest.mark.integration]


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    yield from host_sshd(aws, "removal-left")


def _shadow(sshd: LoopbackSshd, user: str) -> tuple[str, str]:
    """The account's password field and its expiry (days since 1970) in /etc/shadow."""
    fields = sshd.run(f"getent shadow {user}").strip().split(":")
    return fields[1], fields[7]


def _forget(sshd: LoopbackSshd, user: str) -> None:
    """What a test left in the host, whatever it got to."""
    sshd.run(f"pkill -KILL -u {user}; userdel -f -r {user}; rm -f /etc/sudoers.d/passport-{user}*", check=False)


def test_a_grants_user_out_of_passports_group_is_locked_ended_and_left_for_an_operator(
    aws: Cloud, sshd: LoopbackSshd
) -> None:
    user, grant = username(), str(uuid.uuid4())
    instance_id = aws.instance_id("web-1")
    try:
        code, out = run_script(
            sshd,
            linux_create(user, grant, admin_rights=True),
        )
        assert code == 0, out
        assert sshd.run(f"ls /etc/sudoers.d/ | grep -c '^passport-{user}-' || true").strip() == "1"
        # The user, with its sudo, leaves Passport's group and keeps something running.
        sshd.run(f"gpasswd -d {user} {MARKER_GROUP}")
        assert MARKER_GROUP not in sshd.run(f"id -nG {user}").split()
        sshd.run(f"runuser -u {user} -- setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        wait_for(lambda: running(sshd, user), timeout=10, what="the user's process")
        password_before, expiry_before = _shadow(sshd, user)

        # A removal whose grant never made this account (its create was refused): someone else's, untouched.
        code, out = run_script(sshd, render_remove(platform="linux", username=user, grant_uid=grant))
        assert (code, out) == (0, f"passport: {user} is not a Passport user; left untouched")
        assert _shadow(sshd, user) == (password_before, expiry_before)
        assert running(sshd, user)

        # The grant made it (one host of a batch, as the portal sends the grants of one request).
        script = render_remove_per_host(username=user, grants={instance_id: grant}, created=[instance_id])
        code, out = run_script(sshd, script, env=f"AWS_SSM_INSTANCE_ID={instance_id}")
        assert code == REMOVAL_REFUSED_EXIT_CODE
        assert out == LINUX_LEFT.replace("$grant_user", user).replace("$marker", MARKER_GROUP)
        # Still there, but it can do nothing: locked, expired, nothing running, no sudo from Passport.
        assert user in aws.host_users("web-1")
        password, expiry = _shadow(sshd, user)
        assert password.startswith("!") and expiry == "1"
        assert not running(sshd, user)
        assert sshd.run(f"ls /etc/sudoers.d/ | grep -c '^passport-{user}' || true").strip() == "0"
        assert sshd.run(f"test -e /var/lib/passport/grants/{grant} && echo KEPT || echo GONE").strip() == "GONE"
        # Tried again, it says the same: nothing of it is deleted by a removal.
        code, _ = run_script(sshd, render_remove(platform="linux", username=user, grant_uid=grant, created=True))
        assert code == REMOVAL_REFUSED_EXIT_CODE and user in aws.host_users("web-1")

        # An operator deletes the account: the next try finishes the removal.
        sshd.run(f"userdel --remove {user}")
        code, out = run_script(sshd, render_remove(platform="linux", username=user, grant_uid=grant, created=True))
        assert (code, out.splitlines()[-1]) == (0, f"passport: {user} removed")
    finally:
        _forget(sshd, user)


def _script_with_spool(sshd: LoopbackSshd, text: str, spool: str) -> tuple[int, str, list[str]]:
    """``run_script`` with a /var/spool of its own (a tmpfs in a mount namespace of the run: the hosts
    share this machine's), laid out by the ``spool`` commands first; also the files left in it."""
    inner = (
        f"mount -t tmpfs tmpfs /var/spool && {{ {spool}; }} </dev/null >/dev/null && "
        '{ bash 2>&1; echo "exit=$?"; } && echo "--- spool" && find /var/spool -type f -printf "%P\\n" | sort'
    )
    out = sshd.run(f"unshare --mount --propagation private -- bash -c {shlex.quote(inner)}", input=text, timeout=120)
    ran, _, files = out.partition("--- spool\n")
    code, output = exit_and_output(ran)
    return code, output, files.split()


def _made_and_left(sshd: LoopbackSshd, user: str, grant: str) -> None:
    """The grant's user made with sudo on the host, then out of Passport's group (its own doing)."""
    code, out = run_script(sshd, linux_create(user, grant, admin_rights=True))
    assert code == 0, out
    sshd.run(f"gpasswd -d {user} {MARKER_GROUP}")


def _jobs(user: str) -> str:
    """The commands laying out the user's crontabs and at jobs (as crontab and at write them, in
    Debian's spool and Red Hat's), root's crontab and another user's at job."""
    return (
        "mkdir -p /var/spool/cron/crontabs /var/spool/cron/atjobs /var/spool/at && "
        f"install -o {user} -m 600 /dev/null /var/spool/cron/crontabs/{user} && "
        f"install -o {user} -m 600 /dev/null /var/spool/cron/{user} && "
        f"install -o {user} -m 700 /dev/null /var/spool/cron/atjobs/a0000101c0ffee && "
        f"install -o {user} -m 700 /dev/null /var/spool/at/a0000201c0ffee && "
        "install -m 600 /dev/null /var/spool/cron/crontabs/root && "
        "install -o nobody -m 700 /dev/null /var/spool/cron/atjobs/a0000301c0ffee"
    )


OTHERS_JOBS = ["cron/atjobs/a0000301c0ffee", "cron/crontabs/root"]


def test_a_removed_users_cron_and_at_jobs_are_deleted(aws: Cloud, sshd: LoopbackSshd) -> None:
    """The full removal (the user still in Passport's group) deletes the same jobs, and no one else's."""
    user, grant = username(), str(uuid.uuid4())
    try:
        code, out = run_script(sshd, linux_create(user, grant))
        assert code == 0, out
        script = render_remove(platform="linux", username=user, grant_uid=grant, created=True)

        code, out, files = _script_with_spool(sshd, script, _jobs(user))

        assert (code, out.splitlines()[-1]) == (0, f"passport: {user} removed")
        assert files == OTHERS_JOBS
    finally:
        _forget(sshd, user)


def test_a_left_users_cron_and_at_jobs_are_deleted(aws: Cloud, sshd: LoopbackSshd) -> None:
    """Locked and expired is not enough: a cron that does not ask PAM about the account runs its
    jobs. Its crontabs and at jobs go, in Debian's spool and Red Hat's; no one else's."""
    user, grant = username(), str(uuid.uuid4())
    try:
        _made_and_left(sshd, user, grant)
        script = render_remove(platform="linux", username=user, grant_uid=grant, created=True)

        code, out, files = _script_with_spool(sshd, script, _jobs(user))

        assert files == OTHERS_JOBS
        assert (code, out) == (
            REMOVAL_REFUSED_EXIT_CODE,
            LINUX_LEFT.replace("$grant_user", user).replace("$marker", MARKER_GROUP),
        )
        password, expiry = _shadow(sshd, user)
        assert password.startswith("!") and expiry == "1"
    finally:
        _forget(sshd, user)


def test_a_left_user_is_taken_out_of_the_groups_it_gave_itself(aws: Cloud, sshd: LoopbackSshd) -> None:
    """With its sudo, the user joined sudo and adm, made disk its primary group and joined a group
    whose name (the host's data) is hostile. An operator who unlocks the account must not hand
    those back: it keeps its own group alone, and the output names what it lost, that name by its gid."""
    user, grant = username(), str(uuid.uuid4())
    tag = uuid.uuid4().hex[:8]
    gid = 1_700_000_000 + int(tag[:6], 16)
    # What the shadow tools still write back (no control character: see the next test).
    hostile = f"g{tag}'\"$(touch${{IFS}}/tmp/pwned-{tag})`id`;|*\u202e x"
    try:
        _made_and_left(sshd, user, grant)
        own = sshd.run(f"id -g {user}").strip()
        sshd.run("cat >> /etc/group", input=f"{hostile}:x:{gid}:{user}\n")
        sshd.run("cat >> /etc/gshadow", input=f"{hostile}:!::{user}\n")
        sshd.run(f"gpasswd -a {user} sudo && gpasswd -a {user} adm && usermod -g disk {user}")
        assert set(sshd.run(f"id -G {user}").split()) == {"27", "4", "6", str(gid)}

        code, out = run_script(sshd, render_remove(platform="linux", username=user, grant_uid=grant, created=True))

        # Its own group alone, as Passport made it; in no group's member list; locked and expired.
        assert sshd.run(f"id -G {user}").split() == [own]
        assert sshd.run(f"grep -c '[:,]{user}\\(,\\|$\\)' /etc/group /etc/gshadow || true").split() == [
            "/etc/group:0",
            "/etc/gshadow:0",
        ]
        password, expiry = _shadow(sshd, user)
        assert password.startswith("!") and expiry == "1"
        assert code == REMOVAL_REFUSED_EXIT_CODE, out
        said, left = out.splitlines()
        assert left == LINUX_LEFT.replace("$grant_user", user).replace("$marker", MARKER_GROUP)
        prefix = f"passport: {user} was taken out of the groups: "
        assert said.startswith(prefix), said
        assert set(said.removeprefix(prefix).split(", ")) == {"sudo", "adm", f"gid {gid}", "disk (its primary group)"}
        assert said.isprintable() and "$(" not in out
        assert sshd.run(f"test -e /tmp/pwned-{tag} && echo RAN || echo NOT").strip() == "NOT"
    finally:
        sshd.run(f"sed -i '/^g{tag}/d' /etc/group /etc/gshadow", check=False)
        sshd.run(f"rm -f /tmp/pwned-{tag}", check=False)
        _forget(sshd, user)


def test_a_left_user_in_a_group_the_shadow_tools_refuse_is_still_locked_and_left_saying_so(
    aws: Cloud, sshd: LoopbackSshd
) -> None:
    """A group name with a control character in /etc/group: usermod and gpasswd refuse to write the
    file back, so the user cannot be taken out of its groups there. Everything else is still done
    (locked, expired, ended), the output says which groups stay (that one by its gid, no terminal
    escape of the host's data in it), and the account is left for an operator all the same."""
    user, grant = username(), str(uuid.uuid4())
    tag = uuid.uuid4().hex[:8]
    gid = 1_700_000_000 + int(tag[:6], 16)
    try:
        _made_and_left(sshd, user, grant)
        sshd.run(f"gpasswd -a {user} sudo")
        sshd.run("cat >> /etc/group", input=f"g{tag}\x1b]0;owned\x07\x1b[2J:x:{gid}:{user}\n")
        sshd.run(f"runuser -u {user} -- setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        wait_for(lambda: running(sshd, user), timeout=10, what="the user's process")

        code, out = run_script(sshd, render_remove(platform="linux", username=user, grant_uid=grant, created=True))

        password, expiry = _shadow(sshd, user)
        assert password.startswith("!") and expiry == "1"
        assert not running(sshd, user)
        assert code == REMOVAL_REFUSED_EXIT_CODE, out
        *_, still, left = out.splitlines()
        assert left == LINUX_LEFT.replace("$grant_user", user).replace("$marker", MARKER_GROUP)
        prefix = f"passport: {user} is still in the groups: "
        assert still.startswith(prefix), out
        assert set(still.removeprefix(prefix).split(", ")) == {"sudo", f"gid {gid}"}
        assert "\x1b" not in out and "\x07" not in out
    finally:
        sshd.run(f"sed -i '/^g{tag}/d' /etc/group /etc/gshadow", check=False)
        _forget(sshd, user)


@pytest.mark.usefixtures("live_db", "worker")
def test_the_portal_records_the_left_user_as_refused_and_never_as_removed(
    prod: AwsAccount, aws: Cloud, sshd: LoopbackSshd
) -> None:
    """Through the worker: a request with sudo on web-1 ends while its user, out of Passport's
    group, still runs something. The grant waits for an operator (``grant.removal_refused``) and
    the request is not completed; once an operator deletes the user, the next try removes it."""
    dana, approver = make_user("dana"), make_user("approver")
    make_membership(dana, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = direct_active_request(prod, dana, approver, admin_rights=True)
    grant = access_request.grants.get()
    user = grant.username
    try:
        sshd.run(f"gpasswd -d {user} {MARKER_GROUP}")
        sshd.run(f"runuser -u {user} -- setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        wait_for(lambda: running(sshd, user), timeout=10, what="the user's process")

        services.access_request_complete(access_request=access_request, actor=dana)
        refused = wait_for(
            lambda: LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removal_refused").first(),
            what="grant.removal_refused",
        )
        assert refused.detail["username"] == user
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REMOVING and grant.last_error.startswith(NEEDS_OPERATOR_PREFIX)
        assert "locked" in grant.last_error and MARKER_GROUP in grant.last_error
        assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETING
        assert not LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removed").exists()
        # On the host: still there, locked and expired, nothing running, no sudo from Passport.
        assert user in aws.host_users("web-1")
        password, expiry = _shadow(sshd, user)
        assert password.startswith("!") and expiry == "1"
        assert not running(sshd, user)
        assert sshd.run(f"ls /etc/sudoers.d/ | grep -c '^passport-{user}' || true").strip() == "0"

        # An operator deletes the user; the grant's retry (or the sweep) then removes the grant.
        sshd.run(f"userdel --remove {user}")
        wait_for(
            lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED,
            timeout=90,
            what="the request completed once the user is gone",
        )
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REMOVED
    finally:
        _forget(sshd, user)
