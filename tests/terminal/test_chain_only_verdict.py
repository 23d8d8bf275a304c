"""A `verify_logbook --chain-only` run (recordings not checked) never turns the Logbook page's verdict
back to "intact" while the last full run's `recording-removed` stands: its entry names the checks
that ran and those skipped, and carries the last full run's verdict, which the page keeps showing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from audit.anchor.status import anchor_status
from audit.models import LogbookEntry
from terminal.models import RecordingChunk
from tests.audit.conftest import raw_sql
from tests.conftest import World
from tests.stack import Cloud
from tests.terminal.storage_helpers import use_s3_recordings
from tests.terminal.test_recording_storage import _recorded
from tests.terminal.test_recording_tamper import _verify

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture
def bucket(aws: Cloud, settings: Any, tmp_path: Path) -> str:
    settings.MEDIA_ROOT = tmp_path / "media"
    return use_s3_recordings(settings, aws.endpoint_url)


def test_a_chain_only_run_keeps_the_last_full_runs_finding_on_the_page(world: World, bucket: str) -> None:
    from workers.tasks import verify_logbook

    session = _recorded(world)
    RecordingChunk.objects.filter(session=session).delete()  # the insider's one statement
    assert verify_logbook() is False  # the daily task finds it
    assert anchor_status().verdict.intact is False

    code, _ = _verify("--chain-only")  # any later chain-only run
    assert code == 0
    verdict = anchor_status().verdict
    entry = LogbookEntry.objects.filter(action="logbook.verified").latest("id")
    client = Client()
    client.force_login(world.auditor)
    page = client.get(reverse("audit:review")).content.decode()
    # The recording is still gone: the page says the run checked the chain only, and keeps the full run's finding.
    assert not (
        verdict.intact and 'class="logbook-verified">intact' in page and "recording" not in str(entry.detail)
    ), f"page verdict intact after a chain-only run while recording {session.pk} is still removed: {entry.detail}"
    failed = LogbookEntry.objects.filter(action="logbook.verification_failed").latest("id")
    assert entry.detail["checks"] == ["chain"] and entry.detail["skipped"] == ["recordings"], entry.detail
    assert (verdict.intact, verdict.run_intact, verdict.skipped) == (False, True, ["recordings"])
    assert verdict.full_run is not None and verdict.full_run.entry_id == failed.pk
    assert (verdict.full_run.intact, verdict.full_run.kinds) == (False, ["recording-removed"])
    assert "chain only (not checked: recordings)" in page
    assert f"Last full run (Logbook entry #{failed.pk}):" in page and "recording-removed" in page
    assert 'class="logbook-verified">intact<' not in page

    # A second chain-only run carries the same full run on; the next full run sets it.
    assert _verify("--chain-only")[0] == 0
    again = anchor_status().verdict
    assert again.full_run == verdict.full_run and again.intact is False
    assert verify_logbook() is False
    full = anchor_status().verdict
    assert (full.skipped, full.full_run, full.intact) == ([], None, False)
    assert (
        "recordings" in LogbookEntry.objects.filter(action="logbook.verification_failed").latest("id").detail["checks"]
    )


def test_a_partial_runs_carried_verdict_edited_to_intact_does_not_hold(world: World, bucket: str) -> None:
    session = _recorded(world)
    RecordingChunk.objects.filter(session=session).delete()
    from workers.tasks import verify_logbook

    assert verify_logbook() is False
    assert _verify("--chain-only")[0] == 0
    entry = LogbookEntry.objects.filter(action="logbook.verified").latest("id")
    carried = {**entry.detail["last_full_run"], "intact": True, "kinds": []}
    raw_sql(
        "UPDATE audit_logbookentry SET detail = jsonb_set(detail, '{last_full_run}', %s::jsonb) WHERE id = %s",
        [json.dumps(carried), entry.pk],
    )
    verdict = anchor_status().verdict
    assert (verdict.genuine, verdict.intact) == (False, False)
