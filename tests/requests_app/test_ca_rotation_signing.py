"""Every certificate for a grant is signed by a CA key its host's lines trust, so a rotation locks
nobody out while its refresh is on its way (Run Command, or the 5-minute retry of a host that failed):
the newest still-trusted key among those the lines were last written with (``Grant.key_ca_fingerprints``),
the active key once the refresh landed, and never a retired one. The person's own (direct or
proxy principal) and the portal's (browser terminal, proxy upstream) alike.

The CA keys here are real (``fake_fleet``, not the ``fleet`` fixture that pins one key)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import Grant, GrantStatus
from sshca.models import CaKey
from sshca.services import ca_key_ensure, ca_key_fingerprints, ca_keys_ensure, ca_retire, ca_rotate
from tests.conftest import World
from tests.fakes.fleet import FakeFleet

pytestmark = pytest.mark.usefixtures("service_settings", "queued")


def _ready_grant(world: World) -> Grant:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch the kernel"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    services.grant_provision(grant_id=grant_id)
    grant = _loaded(grant_id)
    assert grant.status == GrantStatus.READY
    return grant


def _loaded(grant_id: int) -> Grant:
    return Grant.objects.select_related("request__account", "instance").get(pk=grant_id)


def _public_key(tmp_path: Path, name: str) -> str:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return Path(f"{key}.pub").read_text()


def _signers(world: World, grant: Grant, tmp_path: Path, name: str) -> dict[str, str]:
    """Who signed each login of the grant issued now, as the Logbook's ``certificate.issued`` says:
    the person's own key and the portal's (``upstream``)."""
    signed: dict[str, str] = {}
    for who, upstream in (("person", False), ("portal", True)):
        services.grant_issue_certificate(
            grant=_loaded(grant.pk),
            user=world.requester,
            public_key=_public_key(tmp_path, f"{name}-{who}"),
            upstream=upstream,
        )
        entry = LogbookEntry.objects.filter(action="certificate.issued", request_id=grant.request_id).latest("id")
        signed[who] = entry.detail["ca_fingerprint"]
    return signed


@pytest.mark.parametrize("cli_sessions", [AwsAccount.CliSessions.DIRECT, AwsAccount.CliSessions.RECORD])
def test_after_a_rotation_a_grant_is_signed_for_by_a_key_its_host_trusts(
    world: World, fake_fleet: FakeFleet, tmp_path: Path, cli_sessions: str
) -> None:
    AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=cli_sessions)
    ca_keys_ensure()
    old = ca_key_ensure(key_type="ed25519")
    grant = _ready_grant(world)
    assert old.fingerprint in (grant.key_ca_fingerprints or [])

    new = ca_rotate(key_type="ed25519")  # its refresh not yet on the host
    assert _signers(world, grant, tmp_path, "before-refresh") == {"person": old.fingerprint, "portal": old.fingerprint}

    assert services.grant_refresh_authorized_keys(grant_id=grant.pk) == services.Outcome()
    assert new.fingerprint in (_loaded(grant.pk).key_ca_fingerprints or [])
    assert _signers(world, grant, tmp_path, "after-refresh") == {"person": new.fingerprint, "portal": new.fingerprint}


def test_a_retired_key_never_signs_and_lines_not_known_get_the_active_key(
    world: World, fake_fleet: FakeFleet, tmp_path: Path
) -> None:
    ca_keys_ensure()
    old = ca_key_ensure(key_type="ed25519")
    grant = _ready_grant(world)
    new = ca_rotate(key_type="ed25519")
    Grant.objects.filter(pk=grant.pk).update(key_ca_fingerprints=None)  # not known (a script on its way)
    assert _signers(world, grant, tmp_path, "not-known") == {"person": new.fingerprint, "portal": new.fingerprint}

    written = ca_key_fingerprints([old.public_key, ca_key_ensure(key_type="rsa").public_key])
    Grant.objects.filter(pk=grant.pk).update(key_ca_fingerprints=written)
    ca_retire(fingerprint=old.fingerprint, force=True)  # compromised: its refresh not yet on the host
    assert CaKey.objects.get(pk=old.pk).state == CaKey.State.RETIRED
    assert _signers(world, grant, tmp_path, "retired") == {"person": new.fingerprint, "portal": new.fingerprint}
