"""A Logbook detail holding what PostgreSQL's jsonb refuses (NUL, surrogates) is stored with
those characters escaped, never refused: no refusal or action loses its entry to what it quotes."""

from __future__ import annotations

from typing import Any

import pytest

from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from audit.services import logbook_append

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("detail", "stored"),
    [
        ({"v": "a\x00b"}, {"v": "a\\x00b"}),
        ({"k\x00ey": "x"}, {"k\\x00ey": "x"}),
        ({"v": "\ud800x"}, {"v": "\\ud800x"}),
        (
            {"v": ["\x00", {"n\x00": ["\udfff"]}], "emoji": "\U0001f600", "n": 1},
            {"v": ["\\x00", {"n\\x00": ["\\udfff"]}], "emoji": "\U0001f600", "n": 1},
        ),
    ],
)
def test_a_detail_with_nul_or_surrogates_is_stored_escaped_and_verifies(detail: dict[str, Any], stored: Any) -> None:
    entry = logbook_append(action="host.refused", actor=None, detail=detail)
    assert entry.detail == stored
    assert LogbookEntry.objects.get(pk=entry.pk).detail == stored
    logbook_append(action="test.after", actor=None)  # the chain goes on
    report = logbook_verify()
    assert report.intact, report.problems


def test_plain_text_with_a_backslash_u_is_left_as_it_is() -> None:
    entry = logbook_append(action="test.event", actor=None, detail={"v": "C:\\u0000\\ud800"})
    assert LogbookEntry.objects.get(pk=entry.pk).detail == {"v": "C:\\u0000\\ud800"}
