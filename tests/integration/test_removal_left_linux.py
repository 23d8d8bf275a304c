"""A Linux removal that finds the grant's user out of Passport's group (``passport-users``).

A user with sudo may take itself out of the group the removal goes by. The grant made that account
(it was ready once), so its removal no longer says "left untouched" and exits 0 (the portal would
call the grant removed while the user, perhaps with sudo, stayed): as the Windows removal does,
the account goes through every step short of its deletion (its Passport sudoers files and records
gone, locked and expired, its processes ended) and the script ends with ``REMOVAL_REFUSED_EXIT_CODE``.
An account of the name the grant never made is still someone else's, left untouched. The real
scripts in a devcloud host."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet.linux_scripts import LINUX_LEFT
from fleet.scripts import MARKER_GROUP, REMOVAL_REFUSED_EXIT_CODE, render_create, render_remove, render_remove_per_host
from requests_app import services
from requests_app.models import AccessRequest, GrantStatus, RequestStatus
from requests_app.services.provisioning.remove import NEEDS_OPERATOR_PREFIX
from tests.factories import make_membership, make_user
from tests.sshd import LoopbackSshd
from tests.stack import Cloud, direct_active_request, wait_for

pytestmark = [pytest.mark.integration]


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    server = LoopbackSshd(aws.devcloud.runtime.hosts, aws.instance_id("web-1"), name="removal-left")
    server.start()
    yield server
    server.stop()


def _username() -> str:
    return "rs-" + "".join("abcdefghijklmnopqrstuvwxyz234567"[b % 32] for b in uuid.uuid4().bytes[:8])


def _script(sshd: LoopbackSshd, text: str, env: str = "") -> tuple[int, str]:
    """Run a script in the host as Run Command would, as root; its exit code and its output."""
    out = sshd.run(f'{env} bash 2>&1; echo "exit=$?"', input=text, timeout=120)
    *lines, last = out.rstrip("\n").split("\n")
    assert last.startswith("exit="), out
    return int(last.removeprefix("exit=")), "\n".join(lines)


def _shadow(sshd: LoopbackSshd, user: str) -> tuple[str, str]:
    """The account's password field and its expiry (days since 1970) in /etc/shadow."""
    fields = sshd.run(f"getent shadow {user}").strip().split(":")
    return fields[1], fields[7]


def _running(sshd: LoopbackSshd, user: str) -> bool:
    return bool(sshd.run(f"pgrep -u {user} || true").strip())


def _forget(sshd: LoopbackSshd, user: str) -> None:
    """What a test left in the host, whatever it got to."""
    sshd.run(f"pkill -KILL -u {user}; userdel -f -r {user}; rm -f /etc/sudoers.d/passport-{user}*", check=False)


def test_a_grants_user_out_of_passports_group_is_locked_ended_and_left_for_an_operator(
    aws: Cloud, sshd: LoopbackSshd
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    user, grant = _username(), str(uuid.uuid4())
    instance_id = aws.instance_id("web-1")
    try:
        code, out = _script(
            sshd,
            render_create(platform="linux", username=user, expires_at=expires, grant_uid=grant, admin_rights=True),
        )
        assert code == 0, out
        assert sshd.run(f"ls /etc/sudoers.d/ | grep -c '^passport-{user}-' || true").strip() == "1"
        # The user, with its sudo, leaves Passport's group and keeps something running.
        sshd.run(f"gpasswd -d {user} {MARKER_GROUP}")
        assert MARKER_GROUP not in sshd.run(f"id -nG {user}").split()
        sshd.run(f"runuser -u {user} -- setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        wait_for(lambda: _running(sshd, user), timeout=10, what="the user's process")
        password_before, expiry_before = _shadow(sshd, user)

        # A removal whose grant never made this account (its create was refused): someone else's, untouched.
        code, out = _script(sshd, render_remove(platform="linux", username=user, grant_uid=grant))
        assert (code, out) == (0, f"passport: {user} is not a Passport user; left untouched")
        assert _shadow(sshd, user) == (password_before, expiry_before)
        assert _running(sshd, user)

        # The grant made it (one host of a batch, as the portal sends the grants of one request).
        script = render_remove_per_host(username=user, grants={instance_id: grant}, created=[instance_id])
        code, out = _script(sshd, script, env=f"AWS_SSM_INSTANCE_ID={instance_id}")
        assert code == REMOVAL_REFUSED_EXIT_CODE
        assert out == LINUX_LEFT.replace("$grant_user", user).replace("$marker", MARKER_GROUP)
        # Still there, but it can do nothing: locked, expired, nothing running, no sudo from Passport.
        assert user in aws.host_users("web-1")
        password, expiry = _shadow(sshd, user)
        assert password.startswith("!") and expiry == "1"
        assert not _running(sshd, user)
        assert sshd.run(f"ls /etc/sudoers.d/ | grep -c '^passport-{user}' || true").strip() == "0"
        assert sshd.run(f"test -e /var/lib/passport/grants/{grant} && echo KEPT || echo GONE").strip() == "GONE"
        # Tried again, it says the same: nothing of it is deleted by a removal.
        code, _ = _script(sshd, render_remove(platform="linux", username=user, grant_uid=grant, created=True))
        assert code == REMOVAL_REFUSED_EXIT_CODE and user in aws.host_users("web-1")

        # An operator deletes the account: the next try finishes the removal.
        sshd.run(f"userdel --remove {user}")
        code, out = _script(sshd, render_remove(platform="linux", username=user, grant_uid=grant, created=True))
        assert (code, out.splitlines()[-1]) == (0, f"passport: {user} removed")
    finally:
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
        wait_for(lambda: _running(sshd, user), timeout=10, what="the user's process")

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
        assert not _running(sshd, user)
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
