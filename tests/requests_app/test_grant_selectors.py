"""The grant selectors: ``grant_get_for_session`` (what an open terminal keeps) lets in and keeps
out exactly whom ``grant_get`` does, and loads only what a session uses."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import Http404

from requests_app import services
from requests_app.models import Grant
from requests_app.selectors import grant_get, grant_get_for_session
from tests.conftest import World


def _outcome(selector: Any, user: Any, pk: int) -> int | None:
    try:
        return int(selector(user=user, pk=pk).pk)
    except Http404:
        return None


@pytest.mark.django_db
def test_the_session_selector_lets_in_exactly_whom_grant_get_does(world: World) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web, world.db], reason="lean"
    )
    grant = Grant.objects.filter(request=access_request).order_by("pk").first()
    assert grant is not None
    people = [world.requester, world.member, world.observer, world.outsider, world.approver, world.auditor]
    for pk in (grant.pk, 10**9):
        expected = [_outcome(grant_get, person, pk) for person in people]
        assert [_outcome(grant_get_for_session, person, pk) for person in people] == expected
    # Not vacuous: the requester gets it, someone with no membership anywhere does not.
    assert _outcome(grant_get_for_session, world.requester, grant.pk) == grant.pk
    assert _outcome(grant_get_for_session, world.outsider, grant.pk) is None


@pytest.mark.django_db
def test_the_session_selector_keeps_the_instance_and_account_and_nothing_of_the_other_grants(
    world: World, django_assert_num_queries: Any
) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web, world.db], reason="lean"
    )
    pk = Grant.objects.filter(request=access_request, instance=world.web).values_list("pk", flat=True).get()
    with django_assert_num_queries(1):
        grant = grant_get_for_session(user=world.requester, pk=pk)
        assert (grant.instance.instance_id, grant.request.account.account_id) == (
            world.web.instance_id,
            world.prod.account_id,
        )
    # grant_get's request carries every grant of the request (with instances) and its people.
    full = grant_get(user=world.requester, pk=pk)
    assert len(full.request._prefetched_objects_cache["grants"]) == 2
    assert not hasattr(grant.request, "_prefetched_objects_cache")
    assert set(grant.request._state.fields_cache) == {"account"}
