"""A small Logbook with one entry per kind of subject, at known times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import time_machine

from audit.models import LogbookEntry
from audit.services import logbook_append
from tests.conftest import World


@dataclass
class SampleLogbook:
    created: LogbookEntry  # alice asks for web-1 on prod, 1 March
    approved: LogbookEntry  # carol approves, 2 March
    staging: LogbookEntry  # alice asks for stage-web-1 on staging, 3 March
    ready: LogbookEntry  # a worker makes web-1 and db-1 ready, 4 March

    @property
    def all(self) -> list[LogbookEntry]:
        return [self.ready, self.staging, self.approved, self.created]


def at(day: int, hour: int = 9) -> time_machine.travel:
    return time_machine.travel(datetime(2026, 3, day, hour, tzinfo=UTC), tick=False)


def build_sample_logbook(world: World) -> SampleLogbook:
    with at(1):
        created = logbook_append(
            action="request.created",
            actor=world.requester,
            account=world.prod,
            request_id=11,
            instance_ids=[world.web.instance_id],
            detail={"reason": "Disk full on web-1", "ticket": "INC-1001", "minutes": 60},
        )
    with at(2, 10):
        approved = logbook_append(
            action="request.approved", actor=world.approver, account=world.prod, request_id=11, detail={"note": "ok"}
        )
    with at(3):
        staging = logbook_append(
            action="request.created",
            actor=world.requester,
            account=world.staging,
            request_id=12,
            instance_ids=[world.stage_web.instance_id],
            detail={"reason": "Check the staging nginx config"},
        )
    with at(4):
        ready = logbook_append(
            action="grant.ready",
            actor=None,
            account=world.prod,
            request_id=11,
            instance_ids=[world.web.instance_id, world.db.instance_id],
            detail={"username": "rs-4f2a9c", "targets": 2},
        )
    return SampleLogbook(created=created, approved=approved, staging=staging, ready=ready)
