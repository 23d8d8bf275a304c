"""The fast reader of the chain walk (audit.chain_scan, PostgreSQL): its verdicts are those of
hashing the typed row, for hostile values too, in one process or several."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from audit import chain_scan, copy_text
from audit.anchor.checkpoints import logbook_checkpoint_write
from audit.anchor.coverage import CheckpointCoverage, checkpoints_load
from audit.anchor.verification import logbook_full_verify
from audit.integrity import ChainReport, logbook_verify
from audit.models import LogbookEntry
from tests.audit.anchoring import rehash_from
from tests.audit.conftest import (
    HUGE_NUMBER,
    INFINITE_TIME,
    UNREADABLE,
    append_many,
    make_unreadable,
    on_postgresql,
    raw_sql,
)

pytestmark = pytest.mark.django_db

SECOND_KEY = "the second Logbook key, at least 32 characters"
SECOND = SECOND_KEY.encode()

HOSTILE = [
    'quote " backslash \\ tab \t newline \n return \r',
    "unicode é ü 漢字 \u2028 \U0001f600 nul-free \x01\x1f\x7f",
    "\\N",
    "\\t literally",
    "",
]


@pytest.fixture(autouse=True)
def _postgresql_only(db: None) -> None:
    if not on_postgresql():
        pytest.skip("The fast reader is PostgreSQL's.")


def _verdicts() -> dict[int, int]:
    with transaction.atomic():
        return {row[0]: row[5] for row in chain_scan.scan(connection, times=True)}


def _hostile_entries() -> list[LogbookEntry]:
    entries = []
    for n, text in enumerate(HOSTILE):
        entries += append_many(
            1,
            action=f"test.{n}",
            account=text[:12],
            request_id=n * 1_000_003,
            instance_ids=[text],
            detail={
                "text": text,
                text: [1, 2.5, 12345678901234567890, None, True, {"z": 1, "a": text, "é": {}}],
                "b": "late key",
                "a": "early key",
                "Z": "upper",
            },
        )
    return entries


def test_hostile_values_verify_as_written_and_any_edit_is_found() -> None:
    entries = _hostile_entries()
    assert set(_verdicts().values()) == {copy_text.MATCH}
    assert logbook_verify().intact

    for entry in entries:
        raw_sql("UPDATE audit_logbookentry SET instance_ids = instance_ids || 'x' WHERE id = %s", [entry.pk])
    assert set(_verdicts().values()) == {copy_text.MISMATCH}


@pytest.mark.parametrize(
    "change",
    [
        'detail = \'{"n": 0, "extra": "\\\\"}\'',
        "detail = '{\"n\": 0.0}'",
        'detail = \'{"n": "0"}\'',
        "account_id = ' '",
        "actor_label = 'system '",
        "created_at = created_at + interval '1 microsecond'",
        "request_id = 0",
        "actor_id = 0",
        "key_id = 'logbook-1 '",
    ],
)
def test_each_kind_of_edit_is_found_by_the_fast_reader(change: str) -> None:
    entries = append_many(3)
    raw_sql(f"UPDATE audit_logbookentry SET {change} WHERE id = %s", [entries[1].pk])  # noqa: S608
    verdicts = _verdicts()
    assert verdicts[entries[0].pk] == verdicts[entries[2].pk] == copy_text.MATCH
    assert verdicts[entries[1].pk] in {copy_text.MISMATCH, copy_text.UNKNOWN_KEY}
    assert f"Entry #{entries[1].pk}" in " ".join(problem.message for problem in logbook_verify().problems)


def test_a_null_where_the_model_has_none_is_not_read_as_empty() -> None:
    """'' and NULL hash differently; COPY's \\N must not become ''."""
    (entry,) = append_many(1, account="")
    raw_sql("ALTER TABLE audit_logbookentry ALTER COLUMN account_id DROP NOT NULL")
    raw_sql("UPDATE audit_logbookentry SET account_id = NULL WHERE id = %s", [entry.pk])
    assert _verdicts()[entry.pk] == copy_text.MISMATCH


@pytest.mark.parametrize("change", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_a_value_python_cannot_read_is_unreadable_not_a_crash(change: str) -> None:
    """The fast reader's verdict, then the typed row's for what it leaves UNCHECKED: never an exception."""
    entries = append_many(3)
    make_unreadable(entries[1], change)
    verdicts = _verdicts()
    assert verdicts[entries[0].pk] == verdicts[entries[2].pk] == copy_text.MATCH
    assert verdicts[entries[1].pk] in {copy_text.UNREADABLE, copy_text.UNCHECKED}
    report = logbook_verify()
    assert _said(report) == [
        (
            "edited",
            [entries[1].pk],
            f"Entry #{entries[1].pk} was edited: its time or detail holds a value the portal cannot have written "
            "(a time outside years 1 to 9999, a number or nesting too large to read back).",
        )
    ]


def test_the_typed_reader_names_values_python_cannot_read() -> None:
    """Columns of other types turn the fast reader off (below): the typed reader names the same rows."""
    entries = append_many(4)
    raw_sql("DROP INDEX IF EXISTS logbook_terminal_session")
    raw_sql("ALTER TABLE audit_logbookentry ALTER COLUMN detail TYPE text")
    assert not chain_scan.fast_scan_supported(connection)
    make_unreadable(entries[1], HUGE_NUMBER.replace("::numeric)", "::numeric)::text"))
    make_unreadable(entries[2], INFINITE_TIME)
    report = logbook_verify()
    assert [(problem.kind, problem.entry_ids) for problem in report.problems] == [
        ("edited", [entries[1].pk]),
        ("edited", [entries[2].pk]),
    ]


def test_a_column_of_another_type_turns_the_fast_reader_off() -> None:
    assert chain_scan.fast_scan_supported(connection)
    # The expression index on detail (audit 0007) would refuse the new type; the test rolls both back.
    raw_sql("DROP INDEX IF EXISTS logbook_terminal_session")
    raw_sql("ALTER TABLE audit_logbookentry ALTER COLUMN detail TYPE text")
    assert not chain_scan.fast_scan_supported(connection)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("2026-01-02 03:04:05+00", "2026-01-02T03:04:05+00:00"),
        ("2026-01-02 03:04:05.1+00", "2026-01-02T03:04:05.100000+00:00"),
        ("2026-01-02 03:04:05.000001+00", "2026-01-02T03:04:05.000001+00:00"),
        ("0099-01-02 03:04:05+00", "0099-01-02T03:04:05+00:00"),
        ("10000-01-02 03:04:05+00", None),
        ("0001-01-02 03:04:05+00 BC", None),
        ("infinity", None),
        ("2026-01-02 03:04:05+01", None),
        (None, None),
    ],
)
def test_canonical_time_from_postgresql_text(text: str | None, canonical: str | None) -> None:
    assert copy_text.canonical_at(text) == canonical


# -- several processes: they need committed rows (a snapshot of their own, exported to the workers)


@pytest.fixture
def committed(transactional_db: None) -> Iterator[None]:
    yield
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")


def _said(report: ChainReport) -> list[tuple[str, list[int], str]]:
    return [(problem.kind, problem.entry_ids, problem.message) for problem in report.problems]


@pytest.mark.django_db(transaction=True)
def test_several_processes_find_what_one_finds(committed: None, settings: Any) -> None:
    entries = append_many(40) + _hostile_entries() + append_many(40)
    one, many = logbook_verify(jobs=1), logbook_verify(jobs=3)
    assert one.intact and many.intact and one.entries == many.entries == len(entries)

    raw_sql("UPDATE audit_logbookentry SET action = 'request.rejected' WHERE id = %s", [entries[5].pk])
    raw_sql('UPDATE audit_logbookentry SET detail = \'{"a": "b"}\' WHERE id = %s', [entries[42].pk])
    raw_sql("DELETE FROM audit_logbookentry WHERE id = %s", [entries[60].pk])
    raw_sql("UPDATE audit_logbookentry SET key_id = 'logbook-9' WHERE id = %s", [entries[-1].pk])
    one, many = logbook_verify(jobs=1), logbook_verify(jobs=3)
    assert _said(one) == _said(many)
    assert {problem.kind for problem in many.problems} == {"edited", "removed"}
    assert many.problem_count == 4


@pytest.mark.django_db(transaction=True)
def test_several_processes_name_values_python_cannot_read(committed: None, evidence: Any) -> None:
    """In the worker processes too, with the checkpoints' observer watching each entry's time."""
    entries = append_many(60)
    logbook_checkpoint_write(reason="periodic")
    make_unreadable(entries[7], HUGE_NUMBER)
    make_unreadable(entries[33], INFINITE_TIME)
    make_unreadable(entries[34], UNREADABLE["a time BC"])
    raw_sql("UPDATE audit_logbookentry SET action = 'request.rejected' WHERE id = %s", [entries[50].pk])
    one, many = _full(1), _full(3)
    assert one == many
    assert [(kind, ids) for kind, ids, _ in one[0]] == [
        ("edited", [entries[7].pk]),
        ("edited", [entries[33].pk]),
        ("edited", [entries[34].pk]),
        ("edited", [entries[50].pk]),
    ]


def test_numbers_that_jsonb_rewrites_still_verify() -> None:
    # PostgreSQL's jsonb writes 1e300 in full and -0.0 as 0.0, and has no NaN: the detail is
    # stored as it was hashed, so a number never reads like an edit.
    numbers = {"big": 1e300, "e16": 1e16, "neg_zero": -0.0, "small": 1.5e-7, "nan": float("nan"), "inf": float("-inf")}
    entry = append_many(1, detail={"numbers": numbers, "list": [-0.0, 2.5e20]})[0]
    report = logbook_verify()
    assert report.intact, [problem.message for problem in report.problems]
    stored = LogbookEntry.objects.get(pk=entry.pk).detail
    assert stored["numbers"]["nan"] == "NaN" and stored["numbers"]["inf"] == "-Infinity"
    assert stored["numbers"]["big"] == int(1e300) and stored["list"] == [0.0, 250000000000000000000]


def _parallel_items(jobs: int) -> list[Any]:
    """What the parallel reader hands the walk, in the walk's own kind of snapshot."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return list(chain_scan.scan(connection, times=False, jobs=jobs, parallel_ok=True))


def _tamper(kind: str, entries: list[LogbookEntry], settings: Any) -> None:
    key = settings.PASSPORT_LOGBOOK_KEYS[settings.PASSPORT_LOGBOOK_KEY_ID].encode()
    if kind == "first of a range removed":
        raw_sql("DELETE FROM audit_logbookentry WHERE id = %s", [entries[30].pk])
    elif kind == "last of a range removed":
        raw_sql("DELETE FROM audit_logbookentry WHERE id = %s", [entries[29].pk])
    elif kind == "a range relinked past entries, with the key":
        # Whole and well keyed inside, but its first entry skips the three before it.
        rehash_from(entries[30:], prev_hash=entries[26].hash, key_id=settings.PASSPORT_LOGBOOK_KEY_ID, key=key)
    elif kind == "a tail rewritten with a guessed key":
        rehash_from(entries[45:], prev_hash=entries[44].hash, key_id=settings.PASSPORT_LOGBOOK_KEY_ID, key=b"guess")
    elif kind == "a legacy prefix, then keyed":
        tip = rehash_from(entries[:35], prev_hash=entries[0].prev_hash, key_id="legacy-sha256")
        rehash_from(entries[35:], prev_hash=tip, key_id=settings.PASSPORT_LOGBOOK_KEY_ID, key=key)
        settings.PASSPORT_LOGBOOK_LEGACY_UNTIL = entries[30].pk  # the upgrade was earlier than the chain says
    elif kind == "a legacy prefix from before the upgrade (allowed)":
        tip = rehash_from(entries[:35], prev_hash=entries[0].prev_hash, key_id="legacy-sha256")
        rehash_from(entries[35:], prev_hash=tip, key_id=settings.PASSPORT_LOGBOOK_KEY_ID, key=key)
        settings.PASSPORT_LOGBOOK_LEGACY_UNTIL = entries[34].pk
    elif kind == "a legacy entry inside keyed ones":
        tip = rehash_from(entries[52:53], prev_hash=entries[51].hash, key_id="legacy-sha256")
        rehash_from(entries[53:], prev_hash=tip, key_id=settings.PASSPORT_LOGBOOK_KEY_ID, key=key)
    elif kind == "a link broken inside a range":
        raw_sql("UPDATE audit_logbookentry SET prev_hash = %s WHERE id = %s", ["0" * 64, entries[57].pk])
    elif kind.startswith("retired key"):
        # Rotated at entries[20]; entries under the retired key after the new key's (a whole range,
        # entries[40:50], or across two, entries[35:45]), as its holder would forge them.
        settings.PASSPORT_LOGBOOK_KEY_ID = "logbook-2"
        settings.PASSPORT_LOGBOOK_KEYS = {"logbook-2": SECOND_KEY, "logbook-1": key.decode()}
        retired = slice(35, 45) if "across" in kind else slice(40, 50)
        tip = rehash_from(entries[20 : retired.start], prev_hash=entries[19].hash, key_id="logbook-2", key=SECOND)
        tip = rehash_from(entries[retired], prev_hash=tip, key_id="logbook-1", key=key)
        rehash_from(entries[retired.stop :], prev_hash=tip, key_id="logbook-2", key=SECOND)
        if "pinned at its end" in kind:
            settings.PASSPORT_LOGBOOK_OLD_KEYS_UNTIL = {"logbook-1": entries[retired.stop - 1].pk}
        elif "pinned inside" in kind:
            settings.PASSPORT_LOGBOOK_OLD_KEYS_UNTIL = {"logbook-1": entries[retired.start + 4].pk}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "kind",
    [
        "first of a range removed",
        "last of a range removed",
        "a range relinked past entries, with the key",
        "a tail rewritten with a guessed key",
        "a legacy prefix, then keyed",
        "a legacy prefix from before the upgrade (allowed)",
        "a legacy entry inside keyed ones",
        "a link broken inside a range",
        "retired key: a whole range after the new key's",
        "retired key: across two ranges after the new key's",
        "retired key: a whole range, pinned inside it",
        "retired key: a whole range, pinned at its end (allowed)",
    ],
)
def test_ranges_taken_whole_say_what_the_entry_by_entry_walk_says(committed: None, settings: Any, kind: str) -> None:
    # 120 entries in 3 processes: 12 ranges of 10 ids (entries[30] starts one, entries[29] ends one).
    entries = append_many(120)
    items = _parallel_items(3)
    assert [type(item) for item in items] == [chain_scan.CleanRange] * 12
    assert sum(item.count for item in items) == 120

    _tamper(kind, entries, settings)
    one, many = logbook_verify(jobs=1), logbook_verify(jobs=3)
    assert one.intact == kind.endswith("(allowed)"), _said(one)
    assert _said(one) == _said(many) and one.problem_count == many.problem_count
    assert one.entries == many.entries
    if kind.startswith("retired key") and not kind.endswith("(allowed)"):
        assert {problem.kind for problem in many.problems} == {"edited"}
        assert many.problem_count == (5 if "pinned inside" in kind else 10)


def _full(jobs: int) -> tuple[list[tuple[str, list[int], str]], int]:
    verification = logbook_full_verify(jobs=jobs)
    assert not verification.error, verification.error
    return _said(verification.report), verification.report.entries


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("tampered", [False, True])
def test_ranges_taken_whole_check_the_checkpoints_as_the_entry_by_entry_walk(
    committed: None, evidence: Any, settings: Any, tampered: bool
) -> None:
    # 120 entries in 12 ranges of 10: #25-#54 get their checkpoint too late (a gap across four
    # ranges, starting and ending inside one), the rest in time; a checkpoint names #74, inside a range.
    start = timezone.now() - timedelta(minutes=60)
    with time_machine.travel(start, tick=False):
        entries = append_many(25)
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        logbook_checkpoint_write(reason="periodic")
    with time_machine.travel(start + timedelta(minutes=30), tick=False):
        entries += append_many(30)
    with time_machine.travel(start + timedelta(minutes=45), tick=False):
        entries += append_many(20)
    with time_machine.travel(start + timedelta(minutes=46), tick=False):
        logbook_checkpoint_write(reason="periodic")
    entries += append_many(45)
    assert [entry.pk - entries[0].pk for entry in entries] == list(range(120))
    if (
        tampered
    ):  # the tail from #60 edited and rehashed with the key: whole ranges, but #74 disagrees with its checkpoint
        raw_sql("UPDATE audit_logbookentry SET detail = '{\"x\": 1}' WHERE id >= %s", [entries[60].pk])
        rehash_from(
            list(LogbookEntry.objects.filter(pk__gte=entries[60].pk).order_by("pk")),
            prev_hash=entries[59].hash,
            key_id=settings.PASSPORT_LOGBOOK_KEY_ID,
            key=settings.PASSPORT_LOGBOOK_KEYS[settings.PASSPORT_LOGBOOK_KEY_ID].encode(),
        )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        coverage = CheckpointCoverage(checkpoints_load()[0])
        items = list(
            chain_scan.scan(connection, times=True, jobs=3, parallel_ok=True, watcher=coverage.range_watcher())
        )
    assert [type(item) for item in items] == [chain_scan.CleanRange] * 12

    one, many = _full(1), _full(3)
    assert one == many
    said, count = many
    assert count == 120
    kinds = [(kind, ids) for kind, ids, _ in said]
    assert ("missing-checkpoint", [entries[25].pk, entries[54].pk]) in kinds
    assert (("rewritten", [entries[74].pk]) in kinds) == tampered
