"""Reading a host's list of short-lived users: only a list that is provably whole is read; and a
name on it is removed only if no grant owns it when its turn comes."""

from __future__ import annotations

from typing import Any

import pytest

from fleet import CommandResult
from fleet.scripts import LIST_END, render_list_users
from requests_app import services
from requests_app.models import Grant, GrantStatus, Instance
from requests_app.services.reconcile import listed_users
from requests_app.services.sweeps import SweepItemFailed
from tests.conftest import World
from tests.factories import make_active_request
from tests.fakes.fleet import FakeFleet, ok


def _listing(stdout: str, *, truncated: bool = False) -> CommandResult:
    return CommandResult(command_id="c-1", status="Success", exit_code=0, stdout=stdout, stderr="", truncated=truncated)


def test_a_whole_listing_gives_its_names() -> None:
    listing = _listing("rs-abcdefgh\nrs-bcdefghi-wxyz\npassport-listed 2\n")
    assert listed_users(listing) == {"rs-abcdefgh", "rs-bcdefghi-wxyz"}
    assert listed_users(_listing("passport-listed 0\n")) == set()


def test_the_listing_script_always_ends_with_its_count_line() -> None:
    """What makes an empty output a lost one: the script prints its count line even with no user."""
    assert render_list_users().strip().splitlines()[-1].startswith(f'echo "{LIST_END} ')


def test_an_empty_successful_listing_is_refused_not_taken_for_no_users() -> None:
    """Success with nothing on standard output: the agent lost the output (it leaves it empty when
    it cannot write the output file, and the exit code still says Success). Read as "no users",
    the host would be marked reconciled with its orphans in place."""
    with pytest.raises(SweepItemFailed, match="came back empty"):
        listed_users(_listing(""))


@pytest.mark.usefixtures("service_settings")
def test_a_host_whose_listing_came_back_empty_is_flagged_not_reconciled(world: World, fleet: FakeFleet) -> None:
    hosts = Instance.objects.values_list("instance_id", flat=True)
    listings = {instance_id: _listing(f"{LIST_END} 0\n") for instance_id in hosts}
    listings[world.db.instance_id] = _listing("")
    fleet.will_batch(listings)

    result = services.reconcile_account(account=world.prod)

    assert set(result.errors) == {world.db.instance_id} and "came back empty" in result.errors[world.db.instance_id]
    host = Instance.objects.get(pk=world.db.pk)
    assert host.reconciled_at is None and "came back empty" in host.reconcile_error
    assert Instance.objects.get(pk=world.web.pk).reconciled_at is not None


@pytest.mark.parametrize(
    "stdout, truncated",
    [
        # Cut by the agent in the middle of rs-abcdefgh-wxyz: the half is a name too.
        ("rs-bcdefghi\nrs-abcdefgh", False),
        ("rs-bcdefghi\nrs-abcdefgh", True),
        ("rs-bcdefghi\nrs-ab\n---Output truncated---", False),
        # The end line with a count the names do not make up, or lines that are not names.
        ("rs-abcdefgh\npassport-listed 2\n", False),
        ("rs-abcdefgh\nrs-ABCDEFGH\npassport-listed 2\n", False),
        ("rs-abcdefgh\npassport-listed \u0661\n", False),
        # Whole-looking, but Systems Manager said it kept only the start.
        ("rs-abcdefgh\npassport-listed 1\n", True),
        ("", True),
    ],
)
def test_a_listing_not_provably_whole_is_refused(stdout: str, truncated: bool) -> None:
    with pytest.raises(SweepItemFailed, match="incomplete"):
        listed_users(_listing(stdout, truncated=truncated))


@pytest.mark.usefixtures("service_settings", "queued")
def test_a_user_a_grant_made_live_during_the_round_is_not_removed(world: World, fleet: FakeFleet) -> None:
    """The listing is read once, then each name no grant owned is removed, one Run Command after the
    other. A request of the same person made and provisioned meanwhile (auto-approval takes
    seconds) owns the name by its turn: its user, live again, is left alone."""
    earlier = make_active_request(world.requester, world.prod, world.web)
    username = Grant.objects.get(request=earlier).username
    Grant.objects.filter(request=earlier).update(status=GrantStatus.REMOVED)  # over, its user left behind
    orphan = "rs-22222222"  # removed first
    assert orphan < username
    listings = {
        instance_id: _listing(f"{LIST_END} 0\n")
        for instance_id in Instance.objects.values_list("instance_id", flat=True)
    }
    listings[world.web.instance_id] = _listing(f"{orphan}\n{username}\n{LIST_END} 2\n")
    fleet.will_batch(listings)
    again: dict[str, Any] = {}

    def first_orphan_removed(**kw: Any) -> CommandResult:
        # While the first orphan's removal runs: the person asks again, and its grant is made ready.
        again["request"] = make_active_request(world.requester, world.prod, world.web)
        return ok("cmd-orphan")

    fleet.will(first_orphan_removed)

    result = services.reconcile_account(account=world.prod)

    grant = Grant.objects.get(request=again["request"])
    assert grant.status == GrantStatus.READY and grant.username == username
    assert [call["comment"] for call in fleet.calls] == [f"Passport: remove orphaned {orphan}"]
    assert result.orphans_removed == [f"{orphan}@{world.web.instance_id}"]
    assert Instance.objects.get(pk=world.web.pk).reconciled_at is not None
