"""A ready Windows grant on the request page: the password with a Copy button, and what
`passport connect` does for it (the command, the username, the forward to 3389, the RDP client).

Instance names come from Name tags and are hostile: they are escaped, and never put into the
command a person may paste into a shell."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.passwords import seal_password
from tests.conftest import World
from tests.factories import make_instance

pytestmark = pytest.mark.django_db

HOSTILE_NAMES = ['"><img src=x onerror=alert(1)>', "$(reboot)"]


@pytest.fixture(autouse=True)
def fast(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _active(world: World, *instances: Instance, sealed: str = "Sealed-Pass-0001") -> AccessRequest:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=list(instances), reason="RDP"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    for grant in Grant.objects.filter(request=access_request).select_related("instance", "request"):
        Grant.objects.filter(pk=grant.pk).update(
            status=GrantStatus.READY, ready_at=now, password_sealed=seal_password(grant, sealed)
        )
    return access_request


def _page(world: World, access_request: AccessRequest, user: Any = None) -> str:
    client = Client()
    client.force_login(user or world.requester)
    response = client.get(f"/requests/{access_request.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_says_how_passport_connect_reaches_a_windows_instance(world: World) -> None:
    access_request = _active(world, world.windows)
    grant = Grant.objects.get(request=access_request)

    page = _page(world, access_request)

    assert 'data-testid="rdp-details"' in page
    assert f"passport connect win-1 --request {access_request.pk}" in page
    assert f'<code data-testid="rdp-username">{grant.username}</code>' in page
    assert "port 3389 (Remote Desktop)" in page and "Session Manager" in page
    assert "<code>127.0.0.1:PORT</code>" in page
    assert f"<code>.\\{grant.username}</code>" in page  # a local account, not a domain controller's


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_is_escaped_and_kept_out_of_the_command(world: World, name: str) -> None:
    windows = make_instance(world.prod, name, platform=Instance.Platform.WINDOWS)
    access_request = _active(world, windows)

    page = _page(world, access_request)

    assert name not in page or name == html.escape(name)
    assert html.escape(name) in page  # the heading names it, escaped
    assert f"passport connect {windows.instance_id} --request {access_request.pk}" in page
    assert f"passport connect {html.escape(name)}" not in page and f"passport connect {name}" not in page


def test_a_name_the_cli_would_not_find_alone_gives_the_id(world: World) -> None:
    twin = make_instance(world.prod, "win-1", platform=Instance.Platform.WINDOWS)
    # A Name equal to another instance's id would make `connect` pick that other instance.
    impostor = make_instance(world.prod, twin.instance_id, platform=Instance.Platform.WINDOWS)
    access_request = _active(world, world.windows, twin, impostor)

    page = _page(world, access_request)

    for instance in (world.windows, twin, impostor):
        assert f"passport connect {instance.instance_id} --request {access_request.pk}" in page
    assert "passport connect win-1 " not in page


def test_only_the_requester_of_an_active_request_sees_the_details(world: World) -> None:
    access_request = _active(world, world.windows, world.web)

    assert _page(world, access_request).count('data-testid="rdp-details"') == 1  # the Linux one has none
    assert 'data-testid="rdp-details"' not in _page(world, access_request, world.approver)
    AccessRequest.objects.filter(pk=access_request.pk).update(status=RequestStatus.COMPLETED)
    assert 'data-testid="rdp-details"' not in _page(world, access_request)


def test_a_domain_controller_account_is_a_domain_account(world: World) -> None:
    controller = make_instance(world.prod, "dc-1", platform=Instance.Platform.WINDOWS, is_domain_controller=True)
    access_request = _active(world, controller)

    page = _page(world, access_request)

    assert "a domain account: this instance is a domain controller" in page
    assert "<code>.\\" not in page


def test_the_revealed_password_has_a_copy_button_bound_to_it(world: World) -> None:
    access_request = _active(world, world.windows, sealed='Pa<ss>&"1')
    grant = Grant.objects.get(request=access_request)
    client = Client()
    client.force_login(world.requester)

    response = client.post(f"/requests/{access_request.pk}/grants/{grant.pk}/password/")

    body = response.content.decode()
    assert response.status_code == 200
    assert (
        f'<code id="password-value-{grant.pk}" data-testid="windows-password">Pa&lt;ss&gt;&amp;&quot;1</code>' in body
    )
    assert f'data-copy-from="password-value-{grant.pk}" data-copy-status="password-copied-{grant.pk}"' in body
    assert f'<span id="password-copied-{grant.pk}" class="copy-status" role="status"' in body
    assert "<script" not in body
