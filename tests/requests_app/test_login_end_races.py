"""The Windows password shown while its request is ended, each on its own PostgreSQL connection, as two
processes would.

The password is read, and its viewing written down, on the request's row locked as it is then
(``credentials.common.grant_usable_now``), the lock an ending takes first: an ending not yet committed
is waited for and refuses the password (which it wipes); one that comes later waits for the viewing,
which the Logbook then shows before the ending. The race helpers are ``tests.accounts.test_membership_races``'s.
"""

from __future__ import annotations

import pytest

from core.errors import RequestRuleError
from requests_app import services
from requests_app.models import AccessRequest, Grant, RequestStatus
from requests_app.passwords import seal_password
from requests_app.services.credentials import logins
from requests_app.services.lifecycle import ending
from tests.accounts.test_membership_races import (  # noqa: F401  (the autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.conftest import World
from tests.factories import make_active_request
from tests.requests_app.conftest import request_actions

pytestmark = pytest.mark.usefixtures("fleet")

PASSWORD = "Sealed-Pass-0001"
REFUSED = "The password is shown only while the request is active and the user is ready."


def _windows_active(world: World) -> Grant:
    access_request = make_active_request(world.requester, world.prod, world.windows)
    grant = Grant.objects.get(request=access_request)
    Grant.objects.filter(pk=grant.pk).update(password_sealed=seal_password(grant, PASSWORD))
    return grant


def _loaded(grant: Grant) -> Grant:
    """What the API view does (``apis.common._grant``): the grant and its request read once, unlocked."""
    return Grant.objects.select_related("request__account", "request__requester", "instance").get(pk=grant.pk)


def _completing(world: World, grant: Grant) -> Side:
    return Side(
        lambda: services.access_request_complete(
            access_request=AccessRequest.objects.get(pk=grant.request_id), actor=world.requester
        )
    )


def test_the_password_asked_while_the_request_is_being_completed_waits_and_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = _windows_active(world)
    hold = Hold(ending.logbook_append)  # the ending, its row written (uncommitted), at its Logbook entry
    monkeypatch.setattr(ending, "logbook_append", hold)
    completing = _completing(world, grant)
    completing.start()
    hold.wait(completing)

    reveal = Side(lambda: services.grant_reveal_password(grant=_loaded(grant), user=world.requester))
    reveal.start()
    wait_for_a_lock_waiter(unless_done=reveal)  # the reveal waits for the ending's row
    hold.release.set()
    completing.finish()
    reveal.join(30)

    assert isinstance(reveal.error, RequestRuleError), f"the password was shown: {reveal.result!r}"
    assert reveal.error.code == "conflict"
    assert str(reveal.error) == REFUSED
    assert AccessRequest.objects.get(pk=grant.request_id).status != RequestStatus.ACTIVE
    assert "grant.password_viewed" not in request_actions(grant.request_id)


def test_a_completion_while_the_password_is_shown_waits_for_its_viewing_to_be_written(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant = _windows_active(world)
    hold = Hold(logins.grant_logbook_append)  # the reveal, the request's row locked, at its Logbook entry
    monkeypatch.setattr(logins, "grant_logbook_append", hold)
    reveal = Side(lambda: services.grant_reveal_password(grant=_loaded(grant), user=world.requester))
    reveal.start()
    hold.wait(reveal)

    completing = _completing(world, grant)
    completing.start()
    wait_for_a_lock_waiter(unless_done=completing)  # the ending waits for the viewing
    assert completing.is_alive(), "the ending did not wait for the password's viewing"
    hold.release.set()

    assert reveal.finish() == PASSWORD
    completing.finish()
    logged = request_actions(grant.request_id)
    assert logged.index("grant.password_viewed") < logged.index("request.completing")
    assert Grant.objects.get(pk=grant.pk).password_sealed is None
