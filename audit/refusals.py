"""Refusals written to the Logbook without letting them grow it: from clients nobody has signed in,
and a signed-in person's same refusal again and again (``capped=False``; a script retrying, a flood).

The Logbook is append-only and never shrinks, so an entry per refused request would let
anyone on the network fill it. Instead, per action and fixed time window:

- the first refusal of each (source, reason) is written at once, with its detail;
- later ones only raise a counter (``RefusalTally``, a conditional UPDATE: safe across processes);
- past ``PASSPORT_REFUSAL_SOURCES_PER_WINDOW`` distinct (source, reason) pairs, further sources
  are counted together as ``OTHER_SOURCES``, so many addresses (a botnet) add no more;
- once the window has closed, the periodic flush writes the counts as one summary entry.

So a window adds at most that cap, plus one entry per reason for the other sources, plus one
summary, to each action's entries, however many requests arrive. A signed-in person's refusals
are not capped (see ``logbook_append_aggregated``): the same one repeated is one entry and a count.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from audit.models import LogbookEntry, RefusalTally
from audit.services import AccountLike, canonical_time, logbook_append
from audit.throttle import ThrottleVerdict, throttle_hit, window_start_for

logger = logging.getLogger(__name__)

OTHER_SOURCES = "other sources"
UNKNOWN_SOURCE = "unknown"
# A window is summarised this long after it ends, so a refusal counted at its very end has committed.
FLUSH_GRACE = timedelta(seconds=30)


def client_source(request: HttpRequest) -> str:
    """The client's address as this server can vouch for it.

    ``REMOTE_ADDR`` unless ``PASSPORT_TRUSTED_PROXY_COUNT`` says that many proxies of ours
    append to X-Forwarded-For; then the address the outermost of them saw. What a client
    writes into the header itself is never taken. An IPv6 client is named by its /64,
    which one subscriber usually holds whole.
    """
    return address_source(client_address(request))


def client_address(request: HttpRequest) -> str:
    """The client's IP address as this server can vouch for it (as ``client_source``, whole), or ""
    when what it would be is not an IP address (a unix socket, a proxy's garbled header)."""
    address = request.META.get("REMOTE_ADDR", "")
    proxies = settings.PASSPORT_TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ip.scope_id:  # a link-local zone (fe80::1%eth0) names this host's interface, not the client
            return str(ipaddress.IPv6Address(ip.packed))
    return str(ip)


def address_source(address: str) -> str:
    """What a client at ``address`` (``client_address``) is counted and recorded as: the address, or
    for IPv6 its /64, which one subscriber usually holds whole; ``UNKNOWN_SOURCE`` for none."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return UNKNOWN_SOURCE
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


# Per process, the named (source, reason) pairs of windows that reached the cap: no pair is
# named after that, so later refusals of other sources go straight to the shared count.
_full_windows: dict[tuple[str, datetime], frozenset[tuple[str, str]]] = {}
_full_lock = threading.Lock()


def _bump(*, action: str, source: str, reason: str, start: datetime) -> bool:
    """Count one more refusal on an existing row (one UPDATE); False when the row is not there."""
    return (
        RefusalTally.objects.filter(action=action, window_start=start, source=source, reason=reason).update(
            count=F("count") + 1
        )
        == 1
    )


def logbook_append_aggregated(
    *,
    action: str,
    source: str,
    reason: str,
    detail: dict[str, Any] | None = None,
    actor: AbstractUser | None = None,
    account: AccountLike | str | None = None,
    request_id: int | None = None,
    instance_ids: Iterable[str] = (),
    capped: bool = True,
) -> LogbookEntry | None:
    """Record one refusal: a Logbook entry if it is the first of its kind this window, else a count.

    ``source`` is who sent it (``client_source``), ``reason`` a short code from a fixed set
    (never text the client chose: it is a key, and the cap on keys relies on that).
    Returns the entry written, or None when the refusal was only counted.

    ``capped=False`` for the refusals of signed-in people (``source`` ``user:<id>``): they are
    never folded into ``OTHER_SOURCES``, so each person's first refusal of a kind names them. Their
    number is bounded by the people there are and how fast each may call (``accounts.api_limits``),
    not by the cap, which is for sources anyone can make up.
    """
    window_seconds = settings.PASSPORT_REFUSAL_WINDOW_SECONDS
    start = window_start_for(timezone.now(), window_seconds)
    source, reason = (source or UNKNOWN_SOURCE)[:64], reason[:64]
    named = None
    if capped:
        with _full_lock:
            named = _full_windows.get((action, start))
    if named is not None and source != OTHER_SOURCES and (source, reason) not in named:
        # A flood past the cap: straight to the shared count, one UPDATE a refusal.
        if _bump(action=action, source=OTHER_SOURCES, reason=reason, start=start):
            return None
        # No shared row for this reason yet, or what this process remembers was rolled back.
        with _full_lock:
            _full_windows.pop((action, start), None)
    elif _bump(action=action, source=source, reason=reason, start=start):
        return None
    if capped and source != OTHER_SOURCES:
        named = frozenset(
            RefusalTally.objects.filter(action=action, window_start=start)
            .exclude(source=OTHER_SOURCES)
            .values_list("source", "reason")
        )
        if len(named) >= settings.PASSPORT_REFUSAL_SOURCES_PER_WINDOW:
            with _full_lock:
                for ended in [key for key in _full_windows if key[1] != start]:
                    del _full_windows[ended]
                _full_windows[(action, start)] = named
            if (source, reason) not in named:
                # Counted with everyone else past the cap, so its entry (if first) names no one.
                source, actor = OTHER_SOURCES, None
                if _bump(action=action, source=source, reason=reason, start=start):
                    return None
    with transaction.atomic():
        try:
            with transaction.atomic():
                RefusalTally.objects.create(action=action, source=source, reason=reason, window_start=start)
        except IntegrityError:
            # Another process wrote this window's first entry a moment ago: this one is counted there.
            if not _bump(action=action, source=source, reason=reason, start=start):
                logger.warning("A %s refusal from %s could not be counted", action, source)
            return None
        return logbook_append(
            action=action,
            actor=actor,
            account=account,
            request_id=request_id,
            instance_ids=instance_ids,
            detail={
                **(detail or {}),
                "source": source,
                "window_start": canonical_time(start),
                "window_seconds": window_seconds,
            },
        )


def person_throttle_hit(
    *, user: AbstractUser, scope: str, limit: int, window_seconds: int, action: str, reason: str
) -> ThrottleVerdict:
    """Count one attempt by a signed-in person in ``scope`` (``audit.throttle``); past ``limit`` in
    the window it is refused, and on record as ``action``: once per person and refusal window in the
    Logbook, then counted (``capped=False``), so a flood adds no entries."""
    verdict = throttle_hit(scope=scope, key=str(user.pk), limit=limit, window_seconds=window_seconds)
    if not verdict.allowed:
        logbook_append_aggregated(
            action=action,
            source=f"user:{user.pk}",
            reason=reason,
            actor=user,
            detail={"limit": limit, "window_seconds": window_seconds},
            capped=False,
        )
    return verdict


def logbook_refusals_flush(*, now: datetime | None = None) -> int:
    """Summarise each closed window: one entry per action with the counts, when any went unwritten.

    A window whose refusals were each written at once (every count 1) needs no summary. The
    rows are deleted with the summary in one transaction, so a window is summarised once
    even when two schedulers run. Returns the number of summary entries written.
    """
    window = timedelta(seconds=settings.PASSPORT_REFUSAL_WINDOW_SECONDS)
    cutoff = (now or timezone.now()) - window - FLUSH_GRACE
    closed = (
        RefusalTally.objects.filter(window_start__lte=cutoff)
        .values_list("action", "window_start")
        .distinct()
        .order_by("window_start", "action")
    )
    written = 0
    for action, start in list(closed):
        try:
            written += _flush_window(action=action, start=start, window=window)
        except Exception:
            # One window failing must not hold up the others; it is tried again next time.
            logger.exception("Could not summarise %s refusals of the window at %s", action, start)
    return written


def _flush_window(*, action: str, start: datetime, window: timedelta) -> int:
    with transaction.atomic():
        rows = list(
            RefusalTally.objects.select_for_update()
            .filter(action=action, window_start=start)
            .order_by("-count", "source", "reason")
        )
        if not rows:
            return 0
        summarised = any(row.count > 1 for row in rows)
        if summarised:
            logbook_append(
                action=action,
                actor=None,
                detail={
                    "summary": True,
                    "window_start": canonical_time(start),
                    "window_end": canonical_time(start + window),
                    "total": sum(row.count for row in rows),
                    "counts": [{"source": row.source, "reason": row.reason, "count": row.count} for row in rows],
                },
            )
        RefusalTally.objects.filter(pk__in=[row.pk for row in rows]).delete()
    return int(summarised)
