"""Reading the Logbook: filters, keyset pages, the actions seen and export batches.

Every read starts from ``logbook_list``, which applies the permission as a queryset
filter, so a person who may not review the Logbook never loads an entry. Pages are cut
by id (keyset), never by OFFSET, so a page deep in a million entries costs what the
first one does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    DateTimeField,
    F,
    Func,
    Max,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.db.models.sql.compiler import SQLCompiler

from audit.copy_text import DETAIL_DECODE_ERRORS
from audit.instance_names import instance_names
from audit.models import LogbookEntry
from audit.permissions import can_review_logbook


@dataclass(frozen=True)
class LogbookFilters:
    """What a reviewer narrowed the Logbook to. Empty values mean "any"."""

    account_id: str = ""
    person: str = ""
    request_id: int | None = None
    instance_id: str = ""
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None
    text: str = ""

    @property
    def active(self) -> bool:
        return any(value not in ("", None) for value in self.as_params().values())

    def as_params(self) -> dict[str, str]:
        """The filters as query parameters (the names the page, the exports and the API read)."""
        params = {
            "account": self.account_id,
            "person": self.person,
            "request": "" if self.request_id is None else str(self.request_id),
            "instance": self.instance_id,
            "action": self.action,
            "since": _format_time(self.since),
            "until": _format_time(self.until),
            "q": self.text,
        }
        return {name: value for name, value in params.items() if value}


def _format_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if moment else ""


@dataclass(frozen=True)
class LogbookPage:
    entries: list[LogbookEntry]
    # Pass as ``after=`` to see the newer page, as ``before=`` to see the older one.
    newer_cursor: int | None = None
    older_cursor: int | None = None


class _SearchText(Func):
    """The searchable text of an entry: action, actor (as recorded) and detail JSON.

    On PostgreSQL this compiles to the expression the trigram index of migration 0002 is
    built on, ``(action || ' ' || actor_label || ' ' || detail::text)``; keep them identical.
    """

    template = "(%(expressions)s)"
    arg_joiner = " || ' ' || "
    output_field = TextField()

    def __init__(self) -> None:
        super().__init__(F("action"), F("actor_label"), Cast("detail", TextField()))


class _Matches(Func):
    """``text LIKE pattern``: ILIKE on PostgreSQL, which the trigram index serves."""

    template = "(%(expressions)s ESCAPE '\\')"
    arg_joiner = " LIKE "
    output_field = BooleanField()

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        # PostgreSQL's default LIKE escape is the backslash already.
        return self.as_sql(compiler, connection, template="(%(expressions)s)", arg_joiner=" ILIKE ", **extra)


def _contains_pattern(text: str) -> str:
    return "%" + connection.ops.prep_for_like_query(text) + "%"


class _HoldsInstance(Func):
    """The entry names this instance among its " i-1 i-2 " ids.

    PostgreSQL: array containment, served by the GIN index of migration 0003 (same
    expression). Elsewhere: the padded LIKE, which matches whole ids only.
    """

    template = "(%(expressions)s ESCAPE '\\')"
    arg_joiner = " LIKE "
    output_field = BooleanField()

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        pattern = f"% {connection.ops.prep_for_like_query(instance_id)} %"
        super().__init__(F("instance_ids"), Value(pattern))

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        column, params = compiler.compile(self.source_expressions[0])
        return f"(string_to_array(btrim({column}), ' ') @> ARRAY[%s]::text[])", [*params, self.instance_id]


def _first_id_from(moment: datetime) -> Subquery:
    return Subquery(LogbookEntry.objects.filter(created_at__gte=moment).order_by("created_at", "id").values("id")[:1])


def _last_id_until(moment: datetime) -> Subquery:
    return Subquery(LogbookEntry.objects.filter(created_at__lte=moment).order_by("-created_at", "-id").values("id")[:1])


def logbook_list(*, user: Any, filters: LogbookFilters) -> QuerySet[LogbookEntry]:
    """Entries the person may review, narrowed by the filters, newest first."""
    if not can_review_logbook(user):
        return LogbookEntry.objects.none()
    entries = LogbookEntry.objects.all()
    if filters.account_id:
        entries = entries.filter(account_id=filters.account_id)
    if filters.person:
        entries = entries.filter(actor_label=filters.person)
    if filters.request_id is not None:
        entries = entries.filter(request_id=filters.request_id)
    if filters.instance_id:
        entries = entries.filter(_HoldsInstance(filters.instance_id))
    if filters.action:
        entries = entries.filter(action=filters.action)
    # Entry times never run backwards (logbook_append), so a time range is also an id
    # range, found through the (created_at, id) index. The id bound keeps a window deep in
    # the history from being searched for by walking back from the newest entry.
    if filters.since is not None:
        entries = entries.filter(created_at__gte=filters.since, id__gte=_first_id_from(filters.since))
    if filters.until is not None:
        entries = entries.filter(created_at__lte=filters.until, id__lte=_last_id_until(filters.until))
    if filters.text:
        entries = entries.filter(_Matches(_SearchText(), Value(_contains_pattern(filters.text))))
    return entries.order_by("-id")


# The times Python's datetime holds. A stored time outside them (infinity, BC, past year 9999) is a
# database writer's, never the portal's, and would fail the read of every entry beside it.
_HELD_TIMES = Q(created_at__gte=datetime.min.replace(tzinfo=UTC), created_at__lte=datetime.max.replace(tzinfo=UTC))


def _shown(entries: QuerySet[LogbookEntry]) -> QuerySet[LogbookEntry]:
    """The entries with their time and detail read so that a value Python cannot hold fails no
    read: the time only when in range (else its text), the detail as its text (``_read_shown``)."""
    return entries.defer("created_at", "detail").annotate(
        held_at=Case(When(_HELD_TIMES, then=F("created_at")), default=None, output_field=DateTimeField()),
        stored_at=Case(
            When(_HELD_TIMES, then=Value(None)), default=Cast("created_at", TextField()), output_field=TextField()
        ),
        stored_detail=Cast("detail", TextField()),
    )


def logbook_entries_after(entry_id: int, *, size: int) -> list[LogbookEntry]:
    """The first ``size`` entries after ``entry_id``, in id order, each read as the page reads it."""
    return _read_shown(list(_shown(LogbookEntry.objects.filter(id__gt=entry_id)).order_by("id")[:size]))


def _read_shown(rows: list[LogbookEntry]) -> list[LogbookEntry]:
    """Each entry's time and detail from ``_shown``'s columns. One that cannot be read (an integer
    past Python's digit limit, nesting past its recursion limit, a time out of range: edited, and
    ``verify_logbook`` names it) keeps its stored text, named in ``entry.unreadable``."""
    for entry in rows:
        unreadable: dict[str, str] = {}
        entry.created_at = getattr(entry, "held_at")  # noqa: B009  # an annotation, not a field
        if entry.created_at is None:
            unreadable["created_at"] = getattr(entry, "stored_at") or ""  # noqa: B009
        text: str | None = getattr(entry, "stored_detail")  # noqa: B009
        try:
            entry.detail = json.loads(text) if text is not None else None
        except DETAIL_DECODE_ERRORS:
            entry.detail = unreadable["detail"] = text  # type: ignore[assignment]
        if unreadable:
            entry.unreadable = unreadable
    return rows


def logbook_page(
    *,
    user: Any,
    filters: LogbookFilters,
    size: int,
    before: int | None = None,
    after: int | None = None,
) -> LogbookPage:
    """One page of at most ``size`` entries, newest first, cut at an entry id.

    ``before`` gives the page of entries older than that id, ``after`` the page of entries
    newer than it; neither gives the newest page. Costs one query on the newest page and
    two (the page and whether the other direction has anything) on any other.
    """
    entries = _shown(logbook_list(user=user, filters=filters))
    newer_cursor: int | None = None
    older_cursor: int | None = None
    # An empty page past either end still links back, from the cursor it was given.
    if after is not None and before is None:
        rows = list(entries.filter(id__gt=after).order_by("id")[: size + 1])
        if len(rows) > size:
            rows = rows[:size]
            newer_cursor = rows[-1].pk
        rows.reverse()
        if entries.filter(id__lte=after).exists():
            older_cursor = rows[-1].pk if rows else after + 1
    else:
        window = entries if before is None else entries.filter(id__lt=before)
        rows = list(window.order_by("-id")[: size + 1])
        if len(rows) > size:
            rows = rows[:size]
            older_cursor = rows[-1].pk
        if before is not None and entries.filter(id__gte=before).exists():
            newer_cursor = rows[0].pk if rows else before - 1
    return LogbookPage(entries=_read_shown(rows), newer_cursor=newer_cursor, older_cursor=older_cursor)


# Distinct actions by skipping through the (action, id) index: one probe per action,
# instead of reading every entry. Portable between PostgreSQL and SQLite.
_ACTIONS_SEEN_SQL = """
WITH RECURSIVE seen(action) AS (
    SELECT MIN(action) FROM audit_logbookentry
    UNION ALL
    SELECT (SELECT MIN(e.action) FROM audit_logbookentry e WHERE e.action > seen.action)
    FROM seen WHERE seen.action IS NOT NULL
)
SELECT action FROM seen WHERE action IS NOT NULL
"""


def logbook_actions_seen(*, user: Any) -> list[str]:
    """Every action name the Logbook holds, sorted, in one query."""
    if not can_review_logbook(user):
        return []
    with connection.cursor() as cursor:
        cursor.execute(_ACTIONS_SEEN_SQL)
        return [action for (action,) in cursor.fetchall()]


def logbook_latest_id() -> int | None:
    """The newest entry id: an export stops there, so entries appended meanwhile stay out."""
    return LogbookEntry.objects.aggregate(latest=Max("id"))["latest"]


def logbook_export_batch(
    *, user: Any, filters: LogbookFilters, after_id: int, up_to_id: int, size: int
) -> list[LogbookEntry]:
    """The next ``size`` matching entries after ``after_id``, oldest first (chain order).

    Exports walk the Logbook in batches by id rather than through a server-side cursor,
    so each batch is a short, independent query: nothing is held open while the client
    reads, and an async response can fetch each batch in a worker thread.
    """
    entries = _shown(logbook_list(user=user, filters=filters)).filter(id__gt=after_id, id__lte=up_to_id)
    return _read_shown(list(entries.order_by("id")[:size]))


def logbook_entry_first(*, action: str, detail: dict[str, Any]) -> LogbookEntry | None:
    """The oldest entry of this action whose detail holds these values, or None.

    Not scoped to a person, nor to the request a row names today (a row's foreign keys are not
    what the Logbook vouches for): for checks the portal makes itself (a recording's sealed
    digest, found by its terminal session's id; migration 0007 indexes that lookup). Whether its
    hash still holds is the caller's to ask (``audit.genuine``).
    """
    lookups = {f"detail__{key}": value for key, value in detail.items()}
    # Read as the page reads (a time or detail Python cannot hold fails nothing: ``entry.unreadable``).
    first = _read_shown(list(_shown(LogbookEntry.objects.filter(action=action, **lookups)).order_by("id")[:1]))
    return first[0] if first else None


def logbook_detail_values(*, action: str, key: str, among: Iterable[Any], value: str) -> dict[Any, Any]:
    """Of the entries of this action whose detail's ``key`` is one of ``among``: that key's value and
    their detail's ``value`` (the newest entry's, where several). One query, on the action's index.

    Not scoped to a person: for what the portal reads back of what it wrote down (why a CLI sign-in
    was revoked, for the periodic run that ends its sessions: ``requests_app.services.withdrawn``)."""
    wanted = sorted(set(among))
    if not wanted:
        return {}
    entries = LogbookEntry.objects.filter(action=action, **{f"detail__{key}__in": wanted}).order_by("id")
    return dict(entries.values_list(f"detail__{key}", f"detail__{value}"))


def logbook_request_entries(*, action: str, request_ids: Iterable[int]) -> QuerySet[LogbookEntry]:
    """The entries of this action about these requests, oldest first (the request index).

    Not scoped to a person: for checks the portal makes itself on what it wrote down, such as the
    sessions it started for a request (``requests_app.services.withdrawn``).
    """
    return LogbookEntry.objects.filter(request_id__in=list(request_ids), action=action).order_by("id")


def logbook_entries_of(*, actions: Iterable[str], chunk_size: int = 2000) -> Iterator[tuple[int, str, Any]]:
    """(id, action, detail) of every entry of these actions, in id order, streamed (the checks the
    full verification runs besides the chain: ``audit.anchor.verification``)."""
    entries = LogbookEntry.objects.filter(action__in=list(actions)).order_by("id")
    return entries.values_list("id", "action", "detail").iterator(chunk_size=chunk_size)


def logbook_instance_names(entries: Iterable[LogbookEntry]) -> dict[str, str]:
    """Today's inventory name of every instance these entries name (one query); unknown ids are left out."""
    return instance_names(instance_id for entry in entries for instance_id in entry.instance_id_list)
