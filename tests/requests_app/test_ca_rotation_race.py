"""A CA key change while a script carrying the CA's keys is on its way to a host.

The create script (of a grant, of a CA refresh, of an expiry move on Linux) is rendered with the
CA keys of that moment. The refresh a rotation or retirement queues lists READY grants only, so a
grant still being created when the keys changed is not in it, and a host whose refresh keeps
failing is dropped once the task gives up. Either way the host would keep trusting a key the
operator retired (a compromised one, retired with --force), or never learn the new active key (a
lockout). The grant records the keys its host's lines carry (``Grant.key_ca_fingerprints``): a
script that carried keys no longer the CA's queues a rewrite at once, and the periodic
``bind_grant_keys`` finds every grant whose record is not the CA's keys of now.

The CA keys here are real (``fake_fleet``, not the ``fleet`` fixture that pins one key).
"""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from requests_app import services
from requests_app.models import Grant, GrantStatus
from sshca.services import ca_key_ensure, ca_keys_ensure, ca_retire, ca_rotate
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, failed, ok

pytestmark = pytest.mark.usefixtures("service_settings")


def _provisioning_grant(world: World) -> int:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch the kernel"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    return grant_id


def _lines_sent(fleet: FakeFleet, call: int = -1) -> str:
    encoded = re.search(r"printf '%s' '([A-Za-z0-9+/=]*)' \| base64 -d", fleet.calls[call]["script"])
    assert encoded is not None
    return base64.b64decode(encoded.group(1)).decode()


def _body(public_key: str) -> str:
    return public_key.split()[1]


def _refresh_queued(queued: list[tuple[str, int]], grant_id: int) -> bool:
    return ("refresh_grant_keys", grant_id) in queued


def test_a_key_retired_while_a_grant_is_created_is_not_left_trusted_on_its_host(
    world: World, fake_fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    ca_keys_ensure()
    compromised = ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="ed25519")  # the compromised key is now "trusted", a new one signs
    grant_id = _provisioning_grant(world)
    refreshed: list[list[int]] = []

    def run_command(**kw: Any) -> Any:
        # While Run Command carries the script: the operator retires the compromised key, and the
        # refresh_authorized_keys task this queues (on commit) lists the grants to rewrite.
        ca_retire(fingerprint=compromised.fingerprint, force=True)
        refreshed.append(services.grants_needing_key_refresh())
        return ok("cmd-create")

    fake_fleet.will(run_command)
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_provision(grant_id=grant_id)
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.READY
    assert _body(compromised.public_key) in _lines_sent(fake_fleet)  # the script carried it
    assert grant_id not in refreshed[0]  # still being created when the retirement's refresh listed

    # Rewritten at once, not in 5 minutes, and the periodic task finds it too until it is.
    assert _refresh_queued(queued, grant_id)
    assert grant_id in services.grants_needing_key_refresh(unbound_only=True)
    assert services.grant_refresh_authorized_keys(grant_id=grant_id) == services.Outcome()
    assert _body(compromised.public_key) not in _lines_sent(fake_fleet)
    assert grant_id not in services.grants_needing_key_refresh(unbound_only=True)


def test_a_key_rotated_while_a_grant_is_created_reaches_its_host(
    world: World, fake_fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    ca_keys_ensure()
    grant_id = _provisioning_grant(world)
    new: list[Any] = []

    def run_command(**kw: Any) -> Any:
        new.append(ca_rotate(key_type="ed25519"))
        return ok("cmd-create")

    fake_fleet.will(run_command)
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_provision(grant_id=grant_id)
    assert Grant.objects.get(pk=grant_id).status == GrantStatus.READY
    assert _body(new[0].public_key) not in _lines_sent(fake_fleet)

    assert _refresh_queued(queued, grant_id)
    assert grant_id in services.grants_needing_key_refresh(unbound_only=True)
    assert services.grant_refresh_authorized_keys(grant_id=grant_id) == services.Outcome()
    assert _body(new[0].public_key) in _lines_sent(fake_fleet)
    assert grant_id not in services.grants_needing_key_refresh(unbound_only=True)


def test_a_grant_created_with_the_keys_of_now_is_not_rewritten(
    world: World, fake_fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    ca_keys_ensure()
    grant_id = _provisioning_grant(world)
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_provision(grant_id=grant_id)

    assert Grant.objects.get(pk=grant_id).status == GrantStatus.READY
    assert not _refresh_queued(queued, grant_id)
    assert grant_id not in services.grants_needing_key_refresh(unbound_only=True)


def test_a_host_whose_refresh_keeps_failing_after_a_forced_retirement_is_tried_again(
    world: World, fake_fleet: FakeFleet, queued: list[tuple[str, int]]
) -> None:
    """refresh_grant_keys gives up after 5 retries; the periodic task must still find the host."""
    ca_keys_ensure()
    compromised = ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="ed25519")
    grant_id = _provisioning_grant(world)
    services.grant_provision(grant_id=grant_id)
    assert grant_id not in services.grants_needing_key_refresh(unbound_only=True)

    ca_retire(fingerprint=compromised.fingerprint, force=True)
    assert grant_id in services.grants_needing_key_refresh()  # what the retirement's refresh lists
    fake_fleet.will(*[failed(exit_code=1, command_id=f"cmd-down-{n}") for n in range(6)])
    for _ in range(6):  # the first try and its 5 retries
        assert services.grant_refresh_authorized_keys(grant_id=grant_id).retry_in is not None

    assert grant_id in services.grants_needing_key_refresh(unbound_only=True)
    assert services.grant_refresh_authorized_keys(grant_id=grant_id) == services.Outcome()
    assert _body(compromised.public_key) not in _lines_sent(fake_fleet)
    assert grant_id not in services.grants_needing_key_refresh(unbound_only=True)


def test_a_key_retired_while_a_refresh_runs_is_rewritten_again(
    world: World, fake_fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    """Another script on a ready grant's host (here a refresh) that carried the keys of before."""
    ca_keys_ensure()
    compromised = ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="ed25519")
    grant_id = _provisioning_grant(world)
    services.grant_provision(grant_id=grant_id)

    def run_command(**kw: Any) -> Any:
        ca_retire(fingerprint=compromised.fingerprint, force=True)
        return ok("cmd-refresh")

    fake_fleet.will(run_command)
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_refresh_authorized_keys(grant_id=grant_id)
    assert _body(compromised.public_key) in _lines_sent(fake_fleet)

    assert _refresh_queued(queued, grant_id)
    assert grant_id in services.grants_needing_key_refresh(unbound_only=True)


def test_a_key_retired_while_the_expiry_is_moved_on_linux_is_rewritten_again(
    world: World, fake_fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    """The Linux expiry move is the create script again: it carries the CA's keys too."""
    ca_keys_ensure()
    compromised = ca_key_ensure(key_type="ed25519")
    ca_rotate(key_type="ed25519")
    grant_id = _provisioning_grant(world)
    services.grant_provision(grant_id=grant_id)
    Grant.objects.filter(pk=grant_id).update(host_expires_at=timezone.now() - timedelta(days=3))

    def run_command(**kw: Any) -> Any:
        ca_retire(fingerprint=compromised.fingerprint, force=True)
        # The retirement's refresh rewrites the host now, before the expiry move's script lands.
        assert services.grant_refresh_authorized_keys(grant_id=grant_id) == services.Outcome()
        return ok("cmd-expiry")

    fake_fleet.will(run_command)
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_sync_account_expiry(grant_id=grant_id)  # tried again: the refresh moved the expiry too
    # The expiry move's script (the call before the refresh's) landed last, with the retired key.
    assert "refresh CA keys" in fake_fleet.calls[-1]["comment"]
    assert _body(compromised.public_key) in _lines_sent(fake_fleet, call=-2)

    assert _refresh_queued(queued, grant_id)
    assert grant_id in services.grants_needing_key_refresh(unbound_only=True)
