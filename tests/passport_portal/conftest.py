"""What the route sweeps reach: an id of every kind with something behind it, and a person who may open every page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from devcloud.idp import TestIdentityProvider
from sshca.services import ca_keys_ensure
from tests.conftest import World
from tests.passport_portal.routes import RealIds
from tests.stack import Cloud
from tests.terminal.test_consumers import make_active_grant
from tests.terminal.test_recordings import record

SWEEP_IDP_SLO = "https://idp.sweep.test/slo"


@pytest.fixture
def real_ids(world: World, aws: Cloud, settings: Any, tmp_path: Path) -> RealIds:
    """An active grant, a sealed recording, an IdP, and their ids; AWS is devcloud."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSPORT_CLI_WHEEL_DIR = tmp_path / "wheels"
    idp = TestIdentityProvider("https://idp.sweep.test/metadata")
    settings.PASSPORT_SAML_IDPS = [
        {
            "slug": "sweep",
            "name": "Sweep SSO",
            "identity_store": "customer",
            "entity_id": idp.entity_id,
            "sso_url": "https://idp.sweep.test/sso",
            "slo_url": SWEEP_IDP_SLO,
            "x509cert": idp.cert_pem,
        }
    ]
    ca_keys_ensure()  # made once here, not in every request the sweeps roll back
    grant = make_active_grant(world)
    session = record(world.requester, grant, [("o", "$ "), ("i", "id\r"), ("o", "uid=1\r\n")])
    pks = (grant.request_id, grant.pk, session.pk, world.prod.pk, world.requester.pk)
    ints = list(dict.fromkeys(str(pk) for pk in pks))
    strings = [world.prod.account_id, world.web.instance_id, "sweep", "approve", "accounts", *ints]
    return RealIds(ints=ints, strings=strings, grant=str(grant.pk), recording=str(session.pk))


@pytest.fixture
def everyone(world: World) -> User:
    """The requester of the live grant, made site admin and auditor too: every page opens for them."""
    user = world.requester
    user.is_superuser = user.is_staff = user.is_auditor = True
    user.save()
    return user
