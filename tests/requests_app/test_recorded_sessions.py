"""Recorded CLI sessions (``AwsAccount.cli_sessions``): what the API tells the CLI, and what it refuses.

On a "record" account SSH to an instance goes only through the portal's recording paths
(its CLI proxy, the browser terminal); the old CLI path, which speaks the Session Manager
data channel itself, is refused with a 409 that says to update the CLI, and the refusal is
in the Logbook. Port forwards to other ports stay direct. On a "direct" account the CLI's
SSH sessions start as before and their Logbook entry says they are not recorded.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from rest_framework.test import APIClient

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import fleet_for
from requests_app import services
from requests_app.models import Grant
from sshca.services import host_ca_public_keys
from tests.requests_app.test_forward_ports import FORWARD, SSH, Scene, _end, _start, make_scene
from tests.stack import Cloud

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(aws: Cloud, db: None, settings: Any) -> Scene:
    return make_scene(aws, settings)


def _set_sessions(scene: Scene, mode: str) -> None:
    AwsAccount.objects.filter(pk=scene.prod.pk).update(cli_sessions=mode)


def _client(scene: Scene) -> APIClient:
    client = APIClient()
    client.force_authenticate(scene.alice)
    return client


def _public_key() -> str:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


@pytest.mark.parametrize(("document", "port"), [(SSH, None), (SSH, 22), (FORWARD, 22), (SSH, 3389)])
def test_ssh_by_the_old_cli_path_is_refused_on_a_recorded_account(
    scene: Scene, aws: Cloud, document: str, port: int | None
) -> None:
    assert AwsAccount.objects.get(pk=scene.prod.pk).cli_sessions == "record"  # the default
    response = _start(scene, scene.web, document, port)

    assert response.status_code == 409, response.content
    message = response.json()["detail"]
    assert "sessions on this account are recorded" in message and "update the passport CLI" in message
    refused = LogbookEntry.objects.get(action="session.refused")
    assert refused.actor == scene.alice and refused.request_id == scene.request.pk
    assert refused.instance_ids.split() == [scene.web.instance_id]
    assert refused.detail == {"reason": "recorded", "document": document, "port": port or 22, "via": "cli"}
    assert not LogbookEntry.objects.filter(action="session.started").exists()
    # AWS was never asked.
    assert aws.devcloud.runtime.sessions.sessions(scene.prod.account_id, "us-east-1", active=True) == []


def test_port_forwards_to_other_ports_stay_direct_on_a_recorded_account(scene: Scene, aws: Cloud) -> None:
    response = _start(scene, scene.windows, FORWARD, None)  # remote desktop
    assert response.status_code == 201, response.content
    started = LogbookEntry.objects.get(action="session.started")
    assert started.detail["port"] == 3389 and "recorded" not in started.detail
    _end(scene, response)
    assert not LogbookEntry.objects.filter(action="session.refused").exists()


@pytest.mark.parametrize("via", ["cli-proxy", "terminal"])
def test_the_portals_recording_paths_may_start_ssh_on_a_recorded_account(scene: Scene, aws: Cloud, via: str) -> None:
    grant = Grant.objects.select_related("instance", "request__account").get(instance=scene.web)
    started = services.grant_start_session(grant=grant, user=scene.alice, document=SSH, port=22, via=via)
    entry = LogbookEntry.objects.get(action="session.started")
    assert entry.detail == {"session_id": started["SessionId"], "document": SSH, "port": 22, "via": via}
    aws_session = aws.devcloud.runtime.sessions.get(started["SessionId"])
    assert aws_session is not None
    fleet_for(scene.prod).terminate_session(started["SessionId"], "us-east-1")


def test_any_other_caller_is_refused_on_a_recorded_account(scene: Scene) -> None:
    grant = Grant.objects.select_related("instance", "request__account").get(instance=scene.web)
    with pytest.raises(RequestRuleError, match="recorded") as caught:
        services.grant_start_session(grant=grant, user=scene.alice, document=SSH, port=22, via="benchmark")
    assert caught.value.code == "conflict"


@pytest.mark.parametrize(("document", "port"), [(SSH, None), (FORWARD, 22)])
def test_direct_accounts_start_cli_ssh_and_say_it_is_not_recorded(
    scene: Scene, aws: Cloud, document: str, port: int | None
) -> None:
    _set_sessions(scene, "direct")
    response = _start(scene, scene.web, document, port)
    assert response.status_code == 201, response.content
    started = LogbookEntry.objects.get(action="session.started")
    assert started.detail == {
        "session_id": response.json()["session_id"],
        "document": document,
        "port": 22,
        "via": "cli",
        "recorded": False,
    }
    _end(scene, response)


# --- what the API tells the CLI -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["record", "direct"])
def test_the_certificate_says_the_session_mode_and_the_host_ca(scene: Scene, mode: str) -> None:
    _set_sessions(scene, mode)
    url = f"/api/requests/{scene.request.pk}/grants/{scene.web.instance_id}/certificate/"
    response = _client(scene).post(url, {"public_key": _public_key()}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["sessions"] == mode
    authorities = body["host_certificate_authorities"]
    assert authorities == host_ca_public_keys() and len(authorities) == 1
    assert authorities[0].startswith("ssh-ed25519 ")
    # The host CA, never the user CA that signed the certificates themselves.
    for certificate in body["certificates"]:
        parsed = serialization.load_ssh_public_identity(certificate.encode())
        assert isinstance(parsed, serialization.SSHCertificate)
        signer = parsed.signature_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        assert signer.decode() not in authorities


def test_the_request_and_the_account_list_say_the_accounts_cli_sessions(scene: Scene) -> None:
    _set_sessions(scene, "direct")
    detail = _client(scene).get(f"/api/requests/{scene.request.pk}/").json()
    assert detail["account"]["cli_sessions"] == "direct"
    accounts = _client(scene).get("/api/accounts/").json()
    assert [row["cli_sessions"] for row in accounts] == ["direct"]


def test_the_schema_describes_the_new_fields(scene: Scene) -> None:
    response = _client(scene).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    components = response.json()["components"]["schemas"]
    certificate = components["CertificateOutput"]["properties"]
    assert {"sessions", "host_certificate_authorities"} <= set(certificate)
    assert certificate["host_certificate_authorities"]["type"] == "array"
    assert "sessions" in components["CertificateOutput"]["required"]
    # One enum for the mode wherever it appears (no second name for the same choices).
    mode = {"$ref": "#/components/schemas/CliSessionsEnum"}
    assert mode in certificate["sessions"]["allOf"]
    for name in ("AccountRefOutput", "AccountOutput"):
        assert mode in components[name]["properties"]["cli_sessions"]["allOf"], name
    assert components["CliSessionsEnum"]["enum"] == ["record", "direct"]


@pytest.mark.parametrize("mode", ["record", "direct"])
def test_the_certificate_api_names_the_principal_it_signed(scene: Scene, mode: str) -> None:
    """Recorded accounts: `proxy-grant-<uid>` (only the recording proxy takes it); direct:
    `direct-grant-<uid>`, which the grant's lines trust only while the account is direct."""
    from cryptography.hazmat.primitives import serialization

    _set_sessions(scene, mode)
    url = f"/api/requests/{scene.request.pk}/grants/{scene.web.instance_id}/certificate/"
    body = _client(scene).post(url, {"public_key": _public_key()}, format="json").json()
    assert body["principal"].startswith("proxy-grant-" if mode == "record" else "direct-grant-")
    for line in body["certificates"]:
        principals = [name.decode() for name in serialization.load_ssh_public_identity(line.encode()).valid_principals]
        assert principals == [body["principal"]]
