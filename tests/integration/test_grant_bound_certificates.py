"""A certificate is good for the one grant it was issued for: its request, on its instance, while
that grant lives. Checked against real OpenSSH sshds inside the devcloud hosts the provisioning
scripts ran on."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from accounts.models import AwsAccount, User
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, Grant, RequestStatus
from sshca.models import IssuedCertificate
from tests.factories import make_membership, make_user
from tests.sshd import LoopbackSshd, openssh_run
from tests.stack import Cloud, direct_active_request, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


@pytest.fixture
def sshds(aws: Cloud) -> Iterator[dict[str, LoopbackSshd]]:
    servers = {
        name: LoopbackSshd(aws.devcloud.runtime.hosts, aws.instance_id(name), name=f"bound-{name}")
        for name in ("web-1", "db-1")
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


def _certificate(tmp_path: Path, grant: Grant, user: User, key: Path) -> Path:
    public = key.with_suffix(".pub").read_text().strip()
    [line] = services.grant_issue_certificate(grant=grant, user=user, public_key=public)
    path = tmp_path / f"grant-{grant.pk}-cert.pub"
    path.write_text(line + "\n")
    return path


def _login(sshd: LoopbackSshd, grant: Grant, key: Path, certificate: Path) -> bool:
    assert sshd.port is not None
    result = openssh_run(port=sshd.port, username=grant.username, identity_file=key, certificate_file=certificate)
    return result.ok and result.stdout.strip() == grant.username


def test_a_certificate_works_for_its_own_grant_only(
    prod: AwsAccount, aws: Cloud, sshds: dict[str, LoopbackSshd], tmp_path: Path
) -> None:
    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    key = tmp_path / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

    first = direct_active_request(prod, alice, approver, ["web-1", "db-1"])
    first_web = first.grants.get(instance__name="web-1")
    first_db = first.grants.get(instance__name="db-1")
    assert first_web.username == first_db.username  # one OS user per person: only the principal differs
    first_web_cert = _certificate(tmp_path, first_web, alice, key)

    assert _login(sshds["web-1"], first_web, key, first_web_cert)
    # Another instance of the same request, same OS username: refused.
    assert not _login(sshds["db-1"], first_db, key, first_web_cert)
    assert _login(sshds["db-1"], first_db, key, _certificate(tmp_path, first_db, alice, key))

    # A later request of the same person on the same instance: its own line, its own certificate.
    later = direct_active_request(prod, alice, approver, ["web-1"])
    later_web = later.grants.get()
    later_web_cert = _certificate(tmp_path, later_web, alice, key)
    assert later_web.username == first_web.username
    assert _login(sshds["web-1"], later_web, key, later_web_cert)
    assert _login(sshds["web-1"], first_web, key, first_web_cert)  # both grants live: both lines there

    # The first request ends while the later one lives on: the user stays, the first certificate is dead.
    services.access_request_complete(access_request=first, actor=alice)
    wait_for(lambda: AccessRequest.objects.get(pk=first.pk).status == RequestStatus.COMPLETED, what="completion")
    assert first_web.username in aws.host_users("web-1")
    assert not _login(sshds["web-1"], first_web, key, first_web_cert)
    assert _login(sshds["web-1"], later_web, key, later_web_cert)
    assert first_web.username not in aws.host_users("db-1")  # no other grant there: the user went

    # The Logbook and the CA's own records name the grant of each certificate.
    issued = LogbookEntry.objects.filter(action="certificate.issued", request_id=later.pk).get()
    assert issued.detail["principal"] == f"direct-grant-{later_web.uid}"  # a person's key on a direct account
    assert issued.instance_id_list == [later_web.instance.instance_id]
    assert f"grant={later_web.uid}" in issued.detail["key_id"]
    assert IssuedCertificate.objects.filter(principal=f"direct-grant-{later_web.uid}").count() == 1

    services.access_request_complete(access_request=later, actor=alice)
    wait_for(lambda: AccessRequest.objects.get(pk=later.pk).status == RequestStatus.COMPLETED, what="completion")
    assert first_web.username not in aws.host_users("web-1")
    assert not _login(sshds["web-1"], later_web, key, later_web_cert)
