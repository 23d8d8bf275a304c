"""A cloud whose listings never end (the same NextToken again, or a new one every page) does not
hold a worker forever: the listing fails with a FleetError after a repeated token or a page cap.
Only the AWS client object is stubbed: the code under test is the real one."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest

from fleet.aws import paging
from fleet.aws.runcommand import RunCommandMixin
from fleet.aws.sessions import SessionsMixin
from fleet.interface import FleetError

STOP = 5_000  # the stub's own stop, far past any cap: the code under test must stop first


class Endless:
    """Answers every page with one more item and a next token: ``same`` repeats one token,
    otherwise each page gives a new one."""

    def __init__(self, *, same: bool) -> None:
        self.calls = 0
        self.same = same

    def _page(self, key: str, item: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.calls > STOP:
            raise AssertionError(f"still paging after {self.calls - 1} pages")
        return {key: [item], "NextToken": "again" if self.same else f"token-{self.calls}"}

    def list_command_invocations(self, **_: Any) -> dict[str, Any]:
        return self._page("CommandInvocations", {"InstanceId": "i-0123456789abcdef0", "Status": "InProgress"})

    def describe_sessions(self, **_: Any) -> dict[str, Any]:
        return self._page("Sessions", {"SessionId": "s-1", "Owner": "x"})


def sessions_of(ssm: Endless) -> list[dict[str, str]]:
    fleet = SessionsMixin.__new__(SessionsMixin)
    fleet._client = lambda service, region, credentials=None: ssm  # type: ignore[method-assign]
    return fleet.active_sessions("i-0123456789abcdef0", "us-east-1")


@pytest.mark.parametrize("same", [True, False], ids=["repeated token", "new token every page"])
def test_list_command_invocations_stops_on_an_endless_next_token(same: bool) -> None:
    ssm = Endless(same=same)
    with pytest.raises(FleetError, match="ListCommandInvocations cmd-1"):
        RunCommandMixin._invocations(ssm, "cmd-1")
    assert ssm.calls == (2 if same else paging.MAX_PAGES)


@pytest.mark.parametrize("same", [True, False], ids=["repeated token", "new token every page"])
def test_describe_sessions_stops_on_an_endless_next_token(same: bool) -> None:
    ssm = Endless(same=same)
    with pytest.raises(FleetError, match="DescribeSessions on i-0123456789abcdef0"):
        sessions_of(ssm)
    assert ssm.calls == (2 if same else paging.MAX_PAGES)


def test_a_listing_that_ends_is_read_whole() -> None:
    class ThreePages:
        def describe_sessions(self, **params: Any) -> dict[str, Any]:
            number = int(params.get("NextToken", "0"))
            page: dict[str, Any] = {"Sessions": [{"SessionId": f"s-{number}", "Owner": "x"}]}
            return {**page, "NextToken": str(number + 1)} if number < 2 else page

    fleet = SessionsMixin.__new__(SessionsMixin)
    fleet._client = lambda service, region, credentials=None: ThreePages()  # type: ignore[method-assign]
    assert [s["SessionId"] for s in fleet.active_sessions("i-0123456789abcdef0", "us-east-1")] == ["s-0", "s-1", "s-2"]


def test_a_paginator_that_never_ends_is_cut_at_the_cap() -> None:
    """botocore's paginators refuse a token repeated at once, but not new tokens without end."""

    def endless() -> Iterator[dict[str, Any]]:
        for number in count():
            if number > STOP:
                raise AssertionError("still paging")
            yield {"Reservations": [], "NextToken": f"t{number}"}

    read = 0
    with pytest.raises(FleetError, match="DescribeInstances in us-east-1: more than 7 pages"):
        for _ in paging.capped_pages(endless(), what="DescribeInstances in us-east-1", max_pages=7):
            read += 1
    assert read == 7
