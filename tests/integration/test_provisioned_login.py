"""After approval a person really logs in to the instance with a portal-signed certificate,
and after completion or expiry nothing of them is left: a real OpenSSH sshd inside the
devcloud host that the provisioning scripts ran on."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import AwsAccount
from requests_app import services
from requests_app.models import AccessRequest, Grant, RequestStatus
from sshca.services import certificate_issue, certificate_key_id
from tests.factories import make_membership, make_user
from tests.sshd import LoopbackSshd, asyncssh_run, openssh_run
from tests.stack import Cloud, direct_active_request, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    server = LoopbackSshd(aws.devcloud.runtime.hosts, aws.instance_id("web-1"), name="login-tests")
    server.start()
    yield server
    server.stop()


def _key(tmp_path: Path, name: str, key_type: str = "ed25519") -> tuple[Path, str]:
    path = tmp_path / name
    extra = ["-b", "3072"] if key_type == "rsa" else []
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, *extra, "-N", "", "-f", str(path)], check=True)
    return path, (tmp_path / f"{name}.pub").read_text().strip()


def _write_certs(tmp_path: Path, name: str, certificates: list[str]) -> list[Path]:
    paths = []
    for index, line in enumerate(certificates):
        path = tmp_path / f"{name}-cert-{index}.pub"
        path.write_text(line + "\n")
        paths.append(path)
    return paths


def test_certificate_login_sudo_and_complete_cleanup(
    prod: AwsAccount, aws: Cloud, sshd: LoopbackSshd, tmp_path: Path
) -> None:
    alice, carol, approver = make_user("alice"), make_user("carol"), make_user("approver")
    for person in (alice, carol):
        make_membership(person, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    plain = direct_active_request(prod, alice, approver)
    with_sudo = direct_active_request(prod, carol, approver, admin_rights=True)
    alice_grant, carol_grant = plain.grants.get(), with_sudo.grants.get()
    assert sshd.port is not None

    # Ed25519: the default. The private key stays here; the portal signs the public half.
    key, public = _key(tmp_path, "alice")
    certificates = services.grant_issue_certificate(grant=alice_grant, user=alice, public_key=public)
    [cert_file] = _write_certs(tmp_path, "alice", certificates)
    login = openssh_run(port=sshd.port, username=alice_grant.username, identity_file=key, certificate_file=cert_file)
    assert login.ok, login.stderr
    assert login.stdout.strip() == alice_grant.username
    private = key.read_text()
    via_asyncssh = asyncssh_run(
        port=sshd.port, username=alice_grant.username, private_key=private, certificate=certificates
    )
    assert via_asyncssh.ok and via_asyncssh.stdout.strip() == alice_grant.username
    no_sudo = openssh_run(
        port=sshd.port, username=alice_grant.username, identity_file=key, certificate_file=cert_file,
        command="sudo -n true && echo SUDO-OK || echo SUDO-REFUSED",
    )  # fmt: skip
    assert "SUDO-REFUSED" in no_sudo.stdout

    # RSA: SHA-2 first, then the SHA-1 certificate for old servers; a modern sshd takes the first.
    rsa_key, rsa_public = _key(tmp_path, "carol-rsa", "rsa")
    rsa_certificates = services.grant_issue_certificate(grant=carol_grant, user=carol, public_key=rsa_public)
    assert len(rsa_certificates) == 2
    rsa_files = _write_certs(tmp_path, "carol", rsa_certificates)
    carol_sudo = openssh_run(
        port=sshd.port, username=carol_grant.username, identity_file=rsa_key, certificate_file=rsa_files,
        command="whoami; sudo -n true && echo SUDO-OK",
    )  # fmt: skip
    assert carol_sudo.ok, carol_sudo.stderr
    assert carol_sudo.stdout.split() == [carol_grant.username, "SUDO-OK"]

    # Refused: someone else's certificate (its principal is not this user) ...
    wrong = openssh_run(port=sshd.port, username=carol_grant.username, identity_file=key, certificate_file=cert_file)
    assert not wrong.ok
    # ... and an expired one.
    short = certificate_issue(
        public_key=public,
        principal=f"grant-{alice_grant.uid}",
        valid_before=timezone.now() + timedelta(seconds=2),
        key_id=certificate_key_id(
            grant_uid=alice_grant.uid, request_id=plain.pk, instance_id=alice_grant.instance.instance_id, person=alice
        ),
    )
    [short_file] = _write_certs(tmp_path, "alice-short", [short])
    time.sleep(3)
    expired = openssh_run(port=sshd.port, username=alice_grant.username, identity_file=key, certificate_file=short_file)
    assert not expired.ok

    # A session still open when the request completes is ended, and the user is gone.
    lingering = subprocess.Popen(
        ["ssh", "-F", "/dev/null", "-i", str(key), "-o", f"CertificateFile={cert_file}", "-o", "IdentitiesOnly=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
         "-p", str(sshd.port), f"{alice_grant.username}@127.0.0.1", "sleep 600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: "sleep 600" in sshd.run("ps -eo args", check=False), what="the lingering session")
    services.access_request_complete(access_request=plain, actor=alice)
    wait_for(lambda: AccessRequest.objects.get(pk=plain.pk).status == RequestStatus.COMPLETED, what="completion")
    lingering.wait(timeout=30)  # the removal ended it (TimeoutExpired otherwise), whatever its exit code
    assert "sleep 600" not in sshd.run("ps -eo args", check=False)
    assert alice_grant.username not in aws.host_users("web-1")
    assert not sshd.run(f"ls /home | grep -x {alice_grant.username} || true").strip()
    after = openssh_run(port=sshd.port, username=alice_grant.username, identity_file=key, certificate_file=cert_file)
    assert not after.ok

    # Expiry does the same for carol, including her sudoers entry.
    AccessRequest.objects.filter(pk=with_sudo.pk).update(expires_at=timezone.now() + timedelta(seconds=1))
    wait_for(
        lambda: AccessRequest.objects.get(pk=with_sudo.pk).status == RequestStatus.EXPIRED, timeout=60, what="expiry"
    )
    assert carol_grant.username not in aws.host_users("web-1")
    # Hers, by name: another test's person may still hold a live sudo grant on this host.
    assert f"passport-{carol_grant.username}" not in sshd.run("ls /etc/sudoers.d")
    gone = openssh_run(port=sshd.port, username=carol_grant.username, identity_file=rsa_key, certificate_file=rsa_files)
    assert not gone.ok
    assert Grant.objects.filter(pk__in=[alice_grant.pk, carol_grant.pk], status="removed").count() == 2


def test_rotating_the_ca_locks_nobody_out(prod: AwsAccount, aws: Cloud, sshd: LoopbackSshd, tmp_path: Path) -> None:
    from audit.models import LogbookEntry
    from sshca.services import ca_rotate

    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = direct_active_request(prod, alice, approver)
    grant = access_request.grants.get()
    key, public = _key(tmp_path, "alice")
    [before] = _write_certs(
        tmp_path, "before", services.grant_issue_certificate(grant=grant, user=alice, public_key=public)
    )
    assert sshd.port is not None

    ca_rotate(key_type="ed25519")  # the host was provisioned trusting only the old key
    wait_for(
        lambda: LogbookEntry.objects.filter(action="grant.keys_refreshed", request_id=access_request.pk).exists(),
        what="the hosts to learn the new CA key",
    )
    [after] = _write_certs(
        tmp_path, "after", services.grant_issue_certificate(grant=grant, user=alice, public_key=public)
    )
    for certificate in (before, after):  # old certificates keep working while the old key is trusted
        login = openssh_run(port=sshd.port, username=grant.username, identity_file=key, certificate_file=certificate)
        assert login.ok, login.stderr
    services.access_request_complete(access_request=access_request, actor=alice)
    wait_for(lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED, what="done")
