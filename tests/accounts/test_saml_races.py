"""A SAML sign-in racing a transaction that writes a row referring to the person and appends to the
Logbook, each on its own PostgreSQL connection, as two processes would.

Such a transaction (the person's own new request in another tab, a site admin adding them to an
account) checks its reference to the person's User row at its commit (Django's foreign keys are
deferred in PostgreSQL), by then holding the Logbook's head; the sign-in appends to the Logbook
last, holding the person's row. A sign-in that locked that row FOR UPDATE would make the reference
check wait for it while it waits for the head: a deadlock, PostgreSQL aborting one of them. The
lock order is written down in ``requests_app.services.lifecycle``; the race helpers are
``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Membership, SamlIdentity, User
from accounts.saml import services as saml_services
from accounts.saml.config import identity_provider
from accounts.saml.services import saml_person_sign_in
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.accounts.test_saml import CAROL, idps  # noqa: F401  (the IdPs, autouse)
from tests.audit.admin_forms import add_inline_row, form_data, superuser_client
from tests.audit.test_admin_trail_accounts import ACCOUNTS
from tests.conftest import World

# A reason with what a hostile page could send: markup, quotes, a bidi mark is refused, so not that.
REASON = "deploy <script>alert('x')</script> \"quoted\" -- ; DROP TABLE"


def _sign_in() -> User:
    idp = identity_provider("customer")
    assert idp is not None
    attributes: dict[str, Any] = {
        "email": CAROL.email,
        "first_name": "Carol <b>",
        "last_name": "O'Customer",
        "groups": ["passport:111111111111:admin", "passport:111111111111:approver", "passport:nonsense:admin"],
    }
    return saml_person_sign_in(idp=idp, name_id=CAROL.name_id, attributes=attributes)


@pytest.mark.parametrize("what", ["her own request", "an admin adding her to an account"])
def test_a_sign_in_does_not_deadlock_with_a_row_referring_to_the_person(
    world: World, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    carol = _sign_in()  # linked, an Admin of prod
    if what == "her own request":

        def other() -> Any:
            return services.access_request_create(
                requester=carol, account=world.prod, instances=[world.web], reason=REASON
            ).pk
    else:
        client, _root = superuser_client()
        url = f"{ACCOUNTS}{world.staging.pk}/change/"
        data = form_data(client, url)
        add_inline_row(data, "memberships", user=str(carol.pk), role="observer")

        def other() -> Any:
            return client.post(url, data).status_code

    # The second sign-in is held with the person's rows locked, before its memberships and its Logbook entries.
    hold = Hold(saml_services.memberships_sync)
    monkeypatch.setattr(saml_services, "memberships_sync", hold)
    signing_in = Side(_sign_in)
    signing_in.start()
    hold.wait(signing_in)

    writing = Side(other)
    writing.start()
    # On main its commit waits for the sign-in's lock on Carol, holding the Logbook's head.
    wait_for_a_lock_waiter(unless_done=writing)
    hold.release.set()

    assert signing_in.finish() == carol
    result = writing.finish()
    if what == "her own request":
        assert AccessRequest.objects.get(pk=result).requester == carol
    else:
        assert result == 302
        assert Membership.objects.get(user=carol, account=world.staging).role == "observer"
    assert Membership.objects.get(user=carol, account=world.prod).role == "admin"
    assert LogbookEntry.objects.filter(action="auth.saml_synced", actor=carol).count() == 2
    assert logbook_verify().intact


def test_two_first_sign_ins_of_one_person_at_once_make_one_person(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two browsers (two tabs, a double submit) finish Carol's first sign-in at the same moment: neither
    has seen the other's new person, both write one; the second write waits for the first and then
    meets its row. It signs in the person the first made, instead of failing (a 500 to the person)."""
    hold = Hold(saml_services.memberships_sync)
    monkeypatch.setattr(saml_services, "memberships_sync", hold)
    first = Side(_sign_in)
    first.start()
    hold.wait(first)  # her person and link written, not committed

    second = Side(_sign_in)
    second.start()
    wait_for_a_lock_waiter(unless_done=second)  # its insert waits for the first's commit
    hold.release.set()

    carol = first.finish()
    assert second.finish() == carol
    assert SamlIdentity.objects.get().user == carol
    assert User.objects.filter(saml_identities__isnull=False).count() == 1
    assert LogbookEntry.objects.filter(action="auth.saml_synced", actor=carol).count() == 2
    assert logbook_verify().intact
