"""Past its end time a request gives no more access, though the expiry sweep that ends it has not run
(the worker or its beat down, or the sweep not due yet): every check before handing out access reads
the end time (``AccessRequest.in_force``), never the status alone, and refuses as for an expired request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.models import LogbookEntry
from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, Grant, RequestStatus
from requests_app.remote_desktop import remote_desktops
from ssmchannel.documents import SSH_DOCUMENT
from terminal.proxy.auth import CLOSE_NOT_USABLE, Refusal, grant_for_proxy
from terminal.services import END_MESSAGES, terminal_refusal, terminal_still_allowed, terminal_unavailable_reason
from tests.conftest import World
from tests.requests_app.test_provisioning import T0, active_request

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("service_settings", "queued", "fleet")]

EXPIRED_TERMINAL = "The request is not active (it is expired)."
CREDENTIALS_REFUSED = "Credentials are issued only while the request is active and the user is ready."
PASSWORD_REFUSED = "The password is shown only while the request is active and the user is ready."


def _past_its_end(world: World, time_machine: Any, instance_name: str) -> tuple[AccessRequest, Grant]:
    """A request active on one instance, the clock moved a second past its end; nothing has swept it."""
    time_machine.move_to(T0, tick=False)
    access_request, (grant_id,) = active_request(world, [getattr(world, instance_name)])
    assert access_request.expires_at is not None
    time_machine.move_to(access_request.expires_at + timedelta(seconds=1), tick=False)
    assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE
    return access_request, Grant.objects.select_related("request__account", "request__requester", "instance").get(
        pk=grant_id
    )


def test_the_model_reads_an_active_request_past_its_end_as_expired(world: World, time_machine: Any) -> None:
    access_request, _ = _past_its_end(world, time_machine, "web")
    assert access_request.expires_at is not None
    assert access_request.status_at() == RequestStatus.EXPIRED
    assert not access_request.in_force()
    assert access_request.in_force(access_request.expires_at - timedelta(seconds=1))
    assert not AccessRequest.objects.in_force().filter(pk=access_request.pk).exists()
    assert (
        AccessRequest.objects.in_force(access_request.expires_at - timedelta(seconds=1))
        .filter(pk=access_request.pk)
        .exists()
    )


def test_no_terminal_opens_past_the_end(world: World, time_machine: Any) -> None:
    _, grant = _past_its_end(world, time_machine, "web")
    assert terminal_unavailable_reason(grant=grant, user=world.requester) == EXPIRED_TERMINAL


def test_a_cli_connection_opens_no_new_channel_past_the_end(world: World, time_machine: Any) -> None:
    _, grant = _past_its_end(world, time_machine, "web")
    assert not terminal_still_allowed(grant=grant)
    assert terminal_refusal(grant=grant) == END_MESSAGES["expired"]


def test_the_cli_proxy_refuses_to_open_past_the_end(world: World, time_machine: Any) -> None:
    """At the door, with the expired request's words: not opened, IAM asked and a slot taken, then closed."""
    access_request, grant = _past_its_end(world, time_machine, "web")
    found = grant_for_proxy(user=world.requester, request_id=access_request.pk, instance_id=grant.instance.instance_id)
    assert isinstance(found, Refusal), f"past its end the proxy hands out {found!r}"
    assert found.code == CLOSE_NOT_USABLE
    assert found.reason.startswith("The request is expired and the user on the instance is ready"), found.reason


def test_no_certificate_is_signed_past_the_end(world: World, time_machine: Any) -> None:
    _, grant = _past_its_end(world, time_machine, "web")
    public_key = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    with pytest.raises(RequestRuleError, match=CREDENTIALS_REFUSED):
        services.grant_issue_certificate(grant=grant, user=world.requester, public_key=public_key)


def test_no_session_is_started_past_the_end(world: World, time_machine: Any) -> None:
    access_request, grant = _past_its_end(world, time_machine, "web")
    with pytest.raises(RequestRuleError, match=CREDENTIALS_REFUSED):
        services.grant_start_session(grant=grant, user=world.requester, document=SSH_DOCUMENT, port=22, via="cli-proxy")
    assert not LogbookEntry.objects.filter(request_id=access_request.pk, action="session.started").exists()


def test_the_windows_password_is_not_shown_past_the_end(world: World, time_machine: Any) -> None:
    access_request, grant = _past_its_end(world, time_machine, "windows")
    with pytest.raises(RequestRuleError, match=PASSWORD_REFUSED):
        services.grant_reveal_password(grant=grant, user=world.requester)
    assert not LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.password_viewed").exists()
    assert remote_desktops(access_request, [grant], world.requester) == []


def test_a_second_before_the_end_the_password_is_still_shown(world: World, time_machine: Any) -> None:
    access_request, grant = _past_its_end(world, time_machine, "windows")
    assert access_request.expires_at is not None
    time_machine.move_to(access_request.expires_at - timedelta(seconds=1), tick=False)
    assert services.grant_reveal_password(grant=grant, user=world.requester)
    assert len(remote_desktops(access_request, [grant], world.requester)) == 1
