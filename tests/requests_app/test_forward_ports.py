"""Which remote ports a session may reach: 22 and 3389 everywhere, others only when an admin opens them.

The refusal is the portal's (before AWS is asked) and is written to the Logbook; an allowed
port goes on to a real StartSession in devcloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AwsAccount, User
from audit.models import LogbookEntry
from core import dispatch
from fleet import fleet_for
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.factories import make_membership, make_user
from tests.stack import Cloud, synced_account

FORWARD = "AWS-StartPortForwardingSession"
SSH = "AWS-StartSSHSession"


@dataclass
class Scene:
    prod: AwsAccount
    alice: User
    web: Instance
    windows: Instance
    request: AccessRequest


@pytest.fixture
def scene(aws: Cloud, db: None, settings: Any) -> Scene:
    return make_scene(aws, settings)


def make_scene(aws: Cloud, settings: Any) -> Scene:
    """Alice's active request for web-1 and win-ad-1 of a synced devcloud account."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    prod = synced_account(aws, "Acme Production")
    alice = make_user("alice")
    make_membership(alice, prod, "admin")
    web = Instance.objects.get(account=prod, name="web-1")
    windows = Instance.objects.get(account=prod, name="win-ad-1")
    access_request = services.access_request_create(
        requester=alice, account=prod, instances=[web, windows], reason="look at the database"
    )
    # Where provisioning leaves it (provisioning itself is tested elsewhere): active, grants ready.
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    access_request.refresh_from_db()
    return Scene(prod, alice, web, windows, access_request)


def _start(scene: Scene, instance: Instance, document: str, port: int | None) -> Any:
    client = APIClient()
    client.force_authenticate(scene.alice)
    body: dict[str, Any] = {"document": document}
    if port is not None:
        body["port"] = port
    return client.post(f"/api/requests/{scene.request.pk}/grants/{instance.instance_id}/session/", body, format="json")


def _end(scene: Scene, response: Any) -> None:
    fleet_for(scene.prod).terminate_session(response.json()["session_id"], "us-east-1")


def test_a_port_the_account_does_not_open_is_refused_and_logged(scene: Scene, aws: Cloud) -> None:
    response = _start(scene, scene.web, FORWARD, 5432)

    assert response.status_code == 400, response.content
    message = response.json()["port"][0]
    assert "Port 5432 is not open" in message and "22, 3389" in message and "administrator" in message
    refused = LogbookEntry.objects.get(action="session.port_refused")
    assert refused.actor == scene.alice and refused.request_id == scene.request.pk
    assert refused.instance_ids.split() == [scene.web.instance_id]
    assert refused.detail == {"port": 5432, "document": FORWARD, "via": "cli", "allowed": [22, 3389]}
    assert not LogbookEntry.objects.filter(action="session.started").exists()
    # AWS was never asked.
    assert aws.devcloud.runtime.sessions.sessions(scene.prod.account_id, "us-east-1", active=True) == []

    # The SSH document reaches any port just as well: the rule is the port's, whatever the document.
    assert _start(scene, scene.web, SSH, 5432).status_code == 400
    assert LogbookEntry.objects.filter(action="session.port_refused").count() == 2


@pytest.mark.parametrize(("document", "port"), [(SSH, None), (SSH, 22), (FORWARD, 22), (FORWARD, 3389)])
def test_ssh_and_remote_desktop_ports_are_open_on_every_account(
    scene: Scene, aws: Cloud, document: str, port: int | None
) -> None:
    # Direct CLI sessions: on a recorded account SSH is refused (tests/requests_app/test_recorded_sessions.py).
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    response = _start(scene, scene.web, document, port)
    assert response.status_code == 201, response.content
    session = aws.devcloud.runtime.sessions.get(response.json()["session_id"])
    assert session is not None and session.parameters == {"portNumber": [str(port or 22)]}
    assert LogbookEntry.objects.get(action="session.started").detail["port"] == (port or 22)
    assert not LogbookEntry.objects.filter(action="session.port_refused").exists()
    _end(scene, response)


def test_windows_defaults_to_remote_desktop(scene: Scene, aws: Cloud) -> None:
    response = _start(scene, scene.windows, FORWARD, None)
    assert response.status_code == 201, response.content
    session = aws.devcloud.runtime.sessions.get(response.json()["session_id"])
    assert session is not None and session.parameters == {"portNumber": ["3389"]}
    _end(scene, response)


def _admin_form(account: AwsAccount, ports: str) -> dict[str, str]:
    return {
        "account_id": account.account_id,
        "name": account.name,
        "regions": '["us-east-1"]',
        "role_arn": account.role_arn,
        "extra_forward_ports": ports,
        "cli_sessions": account.cli_sessions,
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "approval_policy-TOTAL_FORMS": "0",
        "approval_policy-INITIAL_FORMS": "0",
    }


def _site_admin() -> Client:
    client = Client()
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    return client


def test_a_port_is_allowed_once_an_admin_opens_it_in_the_admin(scene: Scene, aws: Cloud) -> None:
    assert _start(scene, scene.web, FORWARD, 5432).status_code == 400
    url = f"/admin/accounts/awsaccount/{scene.prod.pk}/change/"

    saved = _site_admin().post(url, _admin_form(scene.prod, "8443, 5432,5432"))

    assert saved.status_code == 302, saved.content.decode()[:3000]
    scene.prod.refresh_from_db()
    assert scene.prod.extra_forward_ports == [5432, 8443]
    assert scene.prod.forward_ports == (22, 3389, 5432, 8443)
    response = _start(scene, scene.web, FORWARD, 5432)
    assert response.status_code == 201, response.content
    started = LogbookEntry.objects.get(action="session.started")
    assert started.detail == {
        "session_id": response.json()["session_id"],
        "document": FORWARD,
        "port": 5432,
        "via": "cli",
    }
    _end(scene, response)
    assert _start(scene, scene.web, FORWARD, 5433).status_code == 400


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ("5432, postgres", "“postgres” is not a port number"),
        ("70000", "Port 70000 is out of range: ports are 1 to 65535."),
        ("0", "Port 0 is out of range"),
        ("-1", "“-1” is not a port number"),
        ("5432.5", "“5432.5” is not a port number"),
        # Full-width digits: str.isdigit() says yes and int() would take them.
        ("\uff15\uff14\uff13\uff12", "is not a port number"),
    ],
)
def test_the_admin_shows_a_clear_error_for_a_bad_port(scene: Scene, ports: str, message: str) -> None:
    url = f"/admin/accounts/awsaccount/{scene.prod.pk}/change/"
    page = _site_admin().post(url, _admin_form(scene.prod, ports))
    assert page.status_code == 200
    assert message in page.content.decode()
    scene.prod.refresh_from_db()
    assert scene.prod.extra_forward_ports == []


@pytest.mark.parametrize("stored", [[0], [65536], [True], ["5432"], [5432, 5432], "5432", [None]])
def test_the_model_refuses_what_is_not_a_list_of_distinct_ports(db: None, stored: Any) -> None:
    account = AwsAccount(
        account_id="123456789012",
        name="x",
        regions=["us-east-1"],
        role_arn="arn:aws:iam::123456789012:role/P",
        extra_forward_ports=stored,
    )
    with pytest.raises(ValidationError) as raised:
        account.full_clean()
    assert "extra_forward_ports" in raised.value.message_dict
    # Written past validation anyway (a shell, a bad migration): what is not a port is never taken for one.
    assert account.forward_ports == ((22, 3389, 5432) if stored == [5432, 5432] else (22, 3389))


def test_the_pages_show_the_allowed_ports(scene: Scene) -> None:
    AwsAccount.objects.filter(pk=scene.prod.pk).update(extra_forward_ports=[5432])
    approver = make_user("bob")
    make_membership(approver, scene.prod, "admin", can_approve=True)
    client = Client()
    client.force_login(approver)
    inventory = client.get("/requests/inventory/").content.decode()
    assert 'session ports <span class="mono">22, 3389, 5432</span>' in inventory
    client.force_login(scene.alice)
    detail = client.get(f"/requests/{scene.request.pk}/").content.decode()
    assert '<span class="mono">22, 3389, 5432</span>' in detail
    accounts = APIClient()
    accounts.force_authenticate(scene.alice)
    assert accounts.get("/api/accounts/").json()[0]["forward_ports"] == [22, 3389, 5432]


def test_an_admins_change_of_the_ports_rewrites_the_live_grants_lines_at_once(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """sshd holds the ports too (permitopen in each grant's authorized_keys lines): the admin's
    change queues the task that rewrites them, not only its next periodic run."""
    sent: list[tuple[Any, ...]] = []

    class Recorded:
        def delay(self, *args: Any) -> None:
            sent.append(args)

    monkeypatch.setitem(dispatch._tasks, "bind_grant_keys", Recorded())
    url = f"/admin/accounts/awsaccount/{scene.prod.pk}/change/"
    admin = _site_admin()

    with django_capture_on_commit_callbacks(execute=True):
        unchanged = admin.post(url, _admin_form(scene.prod, ""))
    assert unchanged.status_code == 302 and sent == []
    with django_capture_on_commit_callbacks(execute=True):
        saved = admin.post(url, _admin_form(scene.prod, "5432"))

    assert saved.status_code == 302
    assert sent == [()]
