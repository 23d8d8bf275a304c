"""An account with "Moderated sessions" on lets nothing reach its instances unless an approver watches.

Only the portal's recording paths (the browser terminal, the CLI proxy) hold a session until an
approver watches it; everything else the portal hands out is refused there, with a 409 the CLI
prints and a Logbook entry (``"reason": "moderated"``): the Session Manager sessions the CLI speaks
itself (`passport forward`, `connect` to Windows, ssh on a direct account) and AWS credentials. The
admin refuses moderation on an account whose CLI sessions are direct; a row saved so before is
moderated all the same. Turned on, it ends what is open of those (``"reason": "moderation on"``).
Real devcloud throughout; the CLI's and the proxy's side are in tests/cli/test_moderated_cli.py and
tests/terminal/proxy/test_moderated_forwards.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import Instance
from tests.audit.admin_forms import _errors, form_data, post_ok, superuser_client
from tests.requests_app.test_forward_ports import FORWARD, SSH, Scene
from tests.requests_app.test_withdrawn_sessions import _grant, _start, aws_credentials_ssm, own_session
from tests.stack import Cloud, ssm_session_active
from workers import tasks

pytestmark = pytest.mark.django_db

MODERATION_ON = "moderation on"
EXTRA = 8443


@pytest.fixture
def scene(devcloud_scene: Scene) -> Scene:
    _set(devcloud_scene, extra_forward_ports=[EXTRA])
    return devcloud_scene


def _set(scene: Scene, **fields: Any) -> None:
    """A change made without the model's save (a script, or a row from before the admin refused it)."""
    AwsAccount.objects.filter(pk=scene.prod.pk).update(**fields)
    scene.prod.refresh_from_db()


def _client(scene: Scene) -> APIClient:
    client = APIClient()
    client.force_authenticate(scene.alice)
    return client


def _session_api(scene: Scene, instance: Instance, document: str, port: int | None) -> Any:
    body: dict[str, Any] = {"document": document}
    if port is not None:
        body["port"] = port
    url = f"/api/requests/{scene.request.pk}/grants/{instance.instance_id}/session/"
    return _client(scene).post(url, body, format="json")


def _open_sessions(aws: Cloud, scene: Scene) -> list[dict[str, Any]]:
    return list(aws.devcloud.runtime.sessions.sessions(scene.prod.account_id, "us-east-1", active=True))


def _terminated() -> dict[str, LogbookEntry]:
    return {
        str(entry.detail["session_id"]): entry
        for entry in LogbookEntry.objects.filter(action="session.terminated").order_by("id")
    }


# --- the admin ---------------------------------------------------------------------------------


def test_the_admin_refuses_moderated_sessions_on_an_account_whose_cli_sessions_are_direct(scene: Scene) -> None:
    client, _ = superuser_client()
    url = f"/admin/accounts/awsaccount/{scene.prod.pk}/change/"

    response = client.post(url, form_data(client, url, cli_sessions="direct", require_session_join="on"))

    assert response.status_code == 200  # the form again, with the error
    assert "Moderated sessions need recorded CLI sessions" in _errors(response.content.decode())
    stored = AwsAccount.objects.get(pk=scene.prod.pk)
    assert (stored.cli_sessions, stored.require_session_join) == (AwsAccount.CliSessions.RECORD, False)
    assert not LogbookEntry.objects.filter(action="admin.changed").exists()
    # Either alone is saved; the model refuses the pair by any path that cleans it.
    post_ok(client, url, form_data(client, url, require_session_join="on"))
    assert AwsAccount.objects.get(pk=scene.prod.pk).require_session_join
    account = AwsAccount.objects.get(pk=scene.prod.pk)
    account.cli_sessions = AwsAccount.CliSessions.DIRECT
    with pytest.raises(ValidationError) as refused:
        account.full_clean()
    assert "Moderated sessions need recorded CLI sessions" in str(refused.value.message_dict["cli_sessions"])


# --- what the session API and AWS credentials refuse ---------------------------------------------


@pytest.mark.parametrize(
    ("mode", "instance", "document", "port"),
    [
        ("record", "web", FORWARD, EXTRA),  # `passport forward web-1 0:8443`
        ("record", "windows", FORWARD, None),  # `passport connect win-ad-1`: Remote Desktop
        ("direct", "web", SSH, None),  # ssh on a direct account (a row from before the admin refused it)
        ("direct", "web", FORWARD, EXTRA),
    ],
)
def test_the_session_api_refuses_every_session_it_cannot_hold_on_a_moderated_account(
    scene: Scene, aws: Cloud, mode: str, instance: str, document: str, port: int | None
) -> None:
    _set(scene, cli_sessions=mode, require_session_join=True)
    target: Instance = getattr(scene, instance)

    response = _session_api(scene, target, document, port)

    assert response.status_code == 409, response.content
    message = response.json()["detail"]
    assert f"Sessions on {scene.prod.name} ({scene.prod.account_id}) are moderated" in message
    assert "would not pass the portal, so it is refused" in message
    refused = LogbookEntry.objects.get(action="session.refused")
    assert refused.actor == scene.alice and refused.request_id == scene.request.pk
    assert refused.instance_ids.split() == [target.instance_id]
    expected_port = port or (3389 if instance == "windows" else 22)
    assert refused.detail == {"reason": "moderated", "document": document, "port": expected_port, "via": "cli"}
    assert not LogbookEntry.objects.filter(action="session.started").exists()
    assert _open_sessions(aws, scene) == []  # AWS was never asked


@pytest.mark.parametrize("via", ["cli-proxy", "terminal"])
def test_the_portals_recording_paths_still_start_on_a_moderated_account(scene: Scene, aws: Cloud, via: str) -> None:
    """They hold the session until an approver watches (terminal.live): the shell waits, not the session."""
    _set(scene, require_session_join=True)
    session_id = _start(scene, scene.web, 22, document=SSH, via=via)
    assert ssm_session_active(aws, session_id)
    assert not LogbookEntry.objects.filter(action="session.refused").exists()


@pytest.mark.parametrize("mode", ["record", "direct"])
def test_aws_credentials_are_refused_on_a_moderated_account(scene: Scene, mode: str) -> None:
    _set(scene, cli_sessions=mode, require_session_join=True)

    response = _client(scene).post(f"/api/requests/{scene.request.pk}/credentials/")

    assert response.status_code == 409, response.content
    message = response.json()["detail"]
    assert "are moderated" in message and "a session started with AWS credentials" in message
    refused = LogbookEntry.objects.get(action="credentials.refused")
    assert refused.actor == scene.alice and refused.request_id == scene.request.pk
    assert refused.detail == {"reason": "moderated"}
    assert sorted(refused.instance_ids.split()) == sorted([scene.web.instance_id, scene.windows.instance_id])
    assert not LogbookEntry.objects.filter(action="credentials.issued").exists()


def test_a_moderated_direct_accounts_certificate_logs_in_to_no_sshd(scene: Scene) -> None:
    """A direct account's certificate names the grant's direct principal, which its sshd accepts over any
    route to it while the account is direct and not moderated; moderated, it names the proxy's, which no
    sshd accepts (and the hosts stop trusting the direct one: test_direct_login_withdrawn)."""
    public_key = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    url = f"/api/requests/{scene.request.pk}/grants/{scene.web.instance_id}/certificate/"
    _set(scene, cli_sessions="direct")
    assert (
        _client(scene)
        .post(url, {"public_key": public_key}, format="json")
        .json()["principal"]
        .startswith("direct-grant-")
    )
    _set(scene, require_session_join=True)
    body = _client(scene).post(url, {"public_key": public_key}, format="json").json()
    assert body["principal"].startswith("proxy-grant-"), body["principal"]


def test_the_request_tells_the_cli_that_the_account_is_moderated(scene: Scene) -> None:
    """What `passport forward` reads to refuse before it listens, and to end a forward once moderation is on."""
    assert _client(scene).get(f"/api/requests/{scene.request.pk}/").json()["account"]["moderated"] is False
    _set(scene, require_session_join=True)
    assert _client(scene).get(f"/api/requests/{scene.request.pk}/").json()["account"]["moderated"] is True


# --- turned on: what is open of them ends ---------------------------------------------------------


def test_turning_moderation_on_in_the_admin_ends_the_sessions_no_approver_can_watch(
    scene: Scene, aws: Cloud, queued_endings: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    forward = _start(scene, scene.web, EXTRA)  # `passport forward web-1 0:8443`
    remote_desktop = _start(scene, scene.windows, 3389)  # `passport connect win-ad-1`
    proxy = _start(scene, scene.web, 22, document=SSH, via="cli-proxy")  # held by the proxy itself
    terminal = _start(scene, scene.web, 22, document=SSH, via="terminal")  # held by the browser terminal

    client, _ = superuser_client()
    url = f"/admin/accounts/awsaccount/{scene.prod.pk}/change/"
    with django_capture_on_commit_callbacks(execute=True):
        post_ok(client, url, form_data(client, url, require_session_join="on"))

    assert queued_endings == [scene.prod.pk]  # the task the save queued after its commit; the worker runs it:
    assert sorted(tasks.end_withdrawn_sessions(scene.prod.pk)["ended"]) == sorted([forward, remote_desktop])
    assert not ssm_session_active(aws, forward) and not ssm_session_active(aws, remote_desktop)
    assert ssm_session_active(aws, proxy) and ssm_session_active(aws, terminal)
    entries = _terminated()
    assert set(entries) == {forward, remote_desktop}
    assert entries[forward].actor is None and entries[forward].request_id == scene.request.pk
    assert entries[forward].instance_ids.split() == [scene.web.instance_id]
    assert entries[forward].detail == {
        "session_id": forward,
        "port": EXTRA,
        "document": FORWARD,
        "via": "cli",
        "reason": MODERATION_ON,
    }
    assert entries[remote_desktop].detail["reason"] == MODERATION_ON
    # The next one is refused; asked again, nothing is ended twice.
    with pytest.raises(RequestRuleError, match="are moderated"):
        _start(scene, scene.web, EXTRA)
    assert services.sessions_end_withdrawn(account_id=scene.prod.pk).ended == []


def test_only_turning_moderation_on_queues_the_ending(scene: Scene, save_account: Callable[..., list[int]]) -> None:
    account = scene.prod
    assert save_account(account, name="Acme Production (renamed)") == []
    assert save_account(account, require_session_join=True) == [account.pk]
    assert save_account(account, require_session_join=True) == []  # moderated already
    assert save_account(account, require_session_join=False) == []  # nothing to end


def test_a_moderated_direct_row_ends_the_direct_sessions_and_those_of_aws_credentials_at_the_periodic_run(
    scene: Scene, aws: Cloud
) -> None:
    """Moderation wins at run time: on a row saved moderated and direct before the admin refused that (here
    a change made without a save), the periodic run ends every session no approver can watch."""
    _set(scene, cli_sessions="direct")
    ssm = aws_credentials_ssm(scene, aws)  # `passport aws-credentials` while the account was not moderated
    own_ssh = own_session(ssm, scene.web, 22, document=SSH)
    own_forward = own_session(ssm, scene.windows, 3389)
    direct_ssh = _start(scene, scene.web, 22, document=SSH)  # `passport connect web-1` on the direct account
    proxy = _start(scene, scene.web, 22, document=SSH, via="cli-proxy")
    _set(scene, require_session_join=True)

    assert tasks.end_all_withdrawn_sessions() == 3

    for session_id in (own_ssh, own_forward, direct_ssh):
        assert not ssm_session_active(aws, session_id), session_id
    assert ssm_session_active(aws, proxy)
    entries = _terminated()
    assert set(entries) == {own_ssh, own_forward, direct_ssh}
    assert entries[own_ssh].detail == {
        "session_id": own_ssh,
        "document": SSH,
        "via": "aws-credentials",
        "reason": MODERATION_ON,
    }
    assert entries[direct_ssh].detail == {
        "session_id": direct_ssh,
        "port": 22,
        "document": SSH,
        "via": "cli",
        "reason": MODERATION_ON,
    }
    assert tasks.end_all_withdrawn_sessions() == 0
    # And nothing of the kind starts again.
    response = _session_api(scene, scene.web, SSH, None)
    assert response.status_code == 409 and "are moderated" in response.json()["detail"]
    assert "CLI sessions are direct" in response.json()["detail"]
    assert _client(scene).post(f"/api/requests/{scene.request.pk}/credentials/").status_code == 409


def test_a_cli_session_started_as_the_account_becomes_moderated_is_ended_at_once_and_refused(
    scene: Scene, aws: Cloud, save_account: Callable[..., list[int]], start_raced: Callable[..., list[str]]
) -> None:
    """The account was read as unmoderated, then the change committed and its task looked for sessions
    before this one was on record: the start itself sees the change and ends it."""

    def moderated_meanwhile() -> None:
        save_account(scene.prod, require_session_join=True)
        assert services.sessions_end_withdrawn(account_id=scene.prod.pk).ended == []

    started = start_raced(moderated_meanwhile)
    with pytest.raises(RequestRuleError) as refused:
        services.grant_start_session(grant=_grant(scene.web), user=scene.alice, document=FORWARD, port=EXTRA, via="cli")

    assert refused.value.code == "conflict" and "became moderated" in str(refused.value)
    assert not ssm_session_active(aws, started[0])
    entries = LogbookEntry.objects.filter(request_id=scene.request.pk, action__startswith="session.").order_by("pk")
    assert [entry.action for entry in entries] == ["session.started", "session.terminated"]
    last = entries.last()
    assert last is not None and last.detail == {
        "session_id": started[0],
        "port": EXTRA,
        "document": FORWARD,
        "via": "cli",
        "reason": MODERATION_ON,
    }
