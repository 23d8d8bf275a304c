"""Reading a host's list of short-lived users: only a list that is provably whole is read."""

from __future__ import annotations

import pytest

from fleet import CommandResult
from requests_app.services.reconcile import listed_users
from requests_app.services.sweeps import SweepItemFailed


def _listing(stdout: str, *, truncated: bool = False) -> CommandResult:
    return CommandResult(command_id="c-1", status="Success", exit_code=0, stdout=stdout, stderr="", truncated=truncated)


def test_a_whole_listing_gives_its_names() -> None:
    listing = _listing("rs-abcdefgh\nrs-bcdefghi-wxyz\npassport-listed 2\n")
    assert listed_users(listing) == {"rs-abcdefgh", "rs-bcdefghi-wxyz"}
    assert listed_users(_listing("passport-listed 0\n")) == set()
    assert listed_users(_listing("")) == set()  # nothing came back: nothing to act on


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
