"""Open sessions on an instance whose region an admin took off its AWS account.

A region taken off refuses every new session, forward and AWS credentials there
(``requests_app``'s ``instance_region_problem``); what is already open ends too. At once: the save
announces it (``accounts.signals.account_regions_taken_off``) and, once it commits, the open browser
terminals and CLI proxy connections of the account's active requests on instances in those regions
are told (``terminal.region_off``, to the request's group); each ends, on record as
``session.terminated`` with the reason ``region``, and its Session Manager session is terminated with
it. Should that message be lost (the channel layer away, a change made without the model's signal),
each open session reads its instance's region every few seconds (``closing.grants_region_refusals``
through terminal.rounds) and ends itself the same way. The sessions the CLI holds itself there are
requests_app's (``services.withdrawn``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from accounts.models import AwsAccount
from requests_app.models import Grant, RequestStatus
from requests_app.services.credentials import REGION_TAKEN_OFF
from requests_app.services.grant_log import grant_logbook_append
from terminal.services.closing import region_taken_off_message, terminals_may_be_open_among
from terminal.services.sessions import request_group

logger = logging.getLogger(__name__)


def terminals_close_for_regions(*, account_id: int, regions: Sequence[str]) -> None:
    """Tell the open terminals and CLI proxy connections of this account's active requests on an
    instance in one of these regions, taken off the account, to end (runs after the change commits;
    a region put back meanwhile is left out)."""
    layer = get_channel_layer()
    if layer is None:
        return
    account = AwsAccount.objects.filter(pk=account_id).first()
    if account is None:
        return
    off = sorted(set(regions) - set(account.managed_regions))
    if not off:
        return
    rows = Grant.objects.filter(
        request__account_id=account_id, request__status=RequestStatus.ACTIVE, instance__region__in=off
    ).values_list("pk", "request_id", "instance__region")
    by_request: dict[tuple[int, str], list[int]] = {}
    for grant_id, request_id, region in rows:
        by_request.setdefault((request_id, region), []).append(grant_id)
    open_among = terminals_may_be_open_among(request_ids=sorted({request_id for request_id, _ in by_request}))
    for (request_id, region), grant_ids in sorted(by_request.items()):
        if request_id not in open_among:
            continue
        message = {
            "type": "terminal.region_off",
            "grant_ids": sorted(grant_ids),
            "region": region,
            "reason": region_taken_off_message(region),
        }
        try:
            async_to_sync(layer.group_send)(request_group(request_id), message)
        except Exception:
            # The region is off regardless: nothing new starts there, and each open session reads its
            # region every few seconds. A channel-layer outage must not fail the admin's save.
            logger.exception("could not tell the open sessions of request %s of a region taken off", request_id)


def region_off_grants(event: dict[str, Any]) -> list[int]:
    """The grant ids a ``terminal.region_off`` message (``terminals_close_for_regions``) names; none,
    should it name them otherwise."""
    grant_ids = event.get("grant_ids")
    if not isinstance(grant_ids, list):
        return []
    return [grant_id for grant_id in grant_ids if isinstance(grant_id, int) and not isinstance(grant_id, bool)]


def terminal_ended_for_region(*, grant: Grant, client: str, region: str, ssm_session_id: str) -> None:
    """On record: an open browser terminal or CLI proxy connection was ended because its instance's
    region was taken off the account (``session.terminated``; its ``terminal.ended``, if it had a
    shell, follows with the message)."""
    detail: dict[str, object] = {"reason": REGION_TAKEN_OFF, "region": region[:64], "client": client}
    if ssm_session_id:
        detail["session_id"] = ssm_session_id
    grant_logbook_append(grant, "session.terminated", detail)
