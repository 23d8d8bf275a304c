"""Prometheus metrics read from the database on each scrape.

Every web process answers from the same rows, so a scrape of any of them (behind a load
balancer, or each in turn) gives one true figure: no in-process counter to lose on a restart or
to add up across processes. Counters come from rows that are never deleted (Logbook entries,
recording chunks, requests, grants) or from counts on them that are never lowered, so they only grow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Min, Q, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from audit.models import LogbookCheckpoint, LogbookEntry, LogbookHead
from core.heartbeat import scheduler_heartbeat_age
from requests_app.models import AccessRequest, Grant, RequestStatus
from terminal.models import RecordingChunk, RecordingState, TerminalSession

logger = logging.getLogger(__name__)

# From approval to active: seconds.
PROVISIONING_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Logbook actions that are a provisioning Run Command that failed (each try is written).
PROVISION_ERROR_ACTIONS = ("grant.provision_retry", "grant.failed")
EXPIRY_STATUSES = (RequestStatus.ACTIVE,)


def _requests_by_status() -> Iterator[Metric]:
    family = GaugeMetricFamily("passport_access_requests", "Access requests by status.", labels=["status"])
    counts = dict(AccessRequest.objects.order_by().values_list("status").annotate(n=Count("id")))
    for status in RequestStatus:
        family.add_metric([status.value], counts.get(status.value, 0))
    yield family
    grants = GaugeMetricFamily("passport_grants", "Grants (one instance of a request) by status.", labels=["status"])
    grant_counts = dict(Grant.objects.order_by().values_list("status").annotate(n=Count("id")))
    for status, count in sorted(grant_counts.items()):
        grants.add_metric([status], count)
    yield grants


def _provisioning() -> Iterator[Metric]:
    took = ExpressionWrapper(F("activated_at") - F("decided_at"), output_field=DurationField())
    done = AccessRequest.objects.order_by().filter(activated_at__isnull=False, decided_at__isnull=False)
    done = done.annotate(took=took)
    aggregates: dict[str, object] = {"total": Count("id"), "took_sum": Sum("took")}
    for index, bound in enumerate(PROVISIONING_BUCKETS):
        aggregates[f"le{index}"] = Count("id", filter=Q(took__lte=timedelta(seconds=bound)))
    row = done.aggregate(**aggregates)
    total = int(row["total"] or 0)
    took_sum = row["took_sum"]
    seconds = took_sum.total_seconds() if isinstance(took_sum, timedelta) else 0.0
    buckets = [(repr(bound), int(row[f"le{i}"] or 0)) for i, bound in enumerate(PROVISIONING_BUCKETS)]
    buckets.append(("+Inf", total))
    yield HistogramMetricFamily(
        "passport_provisioning_seconds",
        "From approval until the request is active (its first instance ready).",
        buckets=buckets,
        sum_value=seconds,
    )
    failed = CounterMetricFamily(
        "passport_provisioning_failures", "Grants that failed for good after their attempts (grant.failed)."
    )
    failed.add_metric([], LogbookEntry.objects.filter(action="grant.failed").count())
    yield failed
    failed_requests = CounterMetricFamily(
        "passport_requests_failed", "Access requests that ended failed (no instance could be provisioned)."
    )
    failed_requests.add_metric([], AccessRequest.objects.filter(status=RequestStatus.FAILED).count())
    yield failed_requests


def _run_command_errors() -> Iterator[Metric]:
    family = CounterMetricFamily(
        "passport_run_command_errors",
        "Run Command invocations that failed, by operation: provision counts the Logbook's entries "
        "(grant.provision_retry, grant.failed); remove sums each grant's failed removal tries "
        "(Grant.cleanup_failures, never reset; grants are not deleted), as the Logbook hears of a host "
        "that never answers only a few times a day.",
        labels=["operation"],
    )
    family.add_metric(["provision"], LogbookEntry.objects.filter(action__in=PROVISION_ERROR_ACTIONS).count())
    removal_failures = Grant.objects.aggregate(total=Sum("cleanup_failures"))["total"]
    family.add_metric(["remove"], int(removal_failures or 0))
    yield family


def _sessions_and_expiry() -> Iterator[Metric]:
    now = timezone.now()
    open_terminals = GaugeMetricFamily("passport_open_terminals", "Browser terminals not yet ended.")
    open_terminals.add_metric([], TerminalSession.objects.filter(ended_at__isnull=True).count())
    yield open_terminals
    oldest = AccessRequest.objects.filter(status__in=EXPIRY_STATUSES, expires_at__lt=now).aggregate(
        oldest=Min("expires_at")
    )["oldest"]
    lag = GaugeMetricFamily(
        "passport_expiry_lag_seconds", "How long the oldest request still live is past its end (0: none is)."
    )
    lag.add_metric([], (now - oldest).total_seconds() if oldest is not None else 0.0)
    yield lag


def _recordings() -> Iterator[Metric]:
    stored = CounterMetricFamily("passport_recording_bytes", "Bytes of terminal recordings stored (every chunk).")
    stored.add_metric([], int(RecordingChunk.objects.aggregate(total=Sum("size"))["total"] or 0))
    yield stored
    failures = CounterMetricFamily(
        "passport_recording_failures", "Terminals whose recording is partial or failed, by state.", labels=["state"]
    )
    counts = dict(
        TerminalSession.objects.order_by()
        .filter(recording_state__in=[RecordingState.PARTIAL, RecordingState.FAILED])
        .values_list("recording_state")
        .annotate(n=Count("id"))
    )
    for state in (RecordingState.PARTIAL, RecordingState.FAILED):
        failures.add_metric([state.value], counts.get(state.value, 0))
    yield failures


def _logbook() -> Iterator[Metric]:
    now = timezone.now()
    last = LogbookCheckpoint.objects.aggregate(at=Max("written_at"), entry=Max("entry_id"))
    if last["at"] is not None:
        age = GaugeMetricFamily(
            "passport_logbook_checkpoint_age_seconds", "Since the last signed checkpoint was written."
        )
        age.add_metric([], (now - last["at"]).total_seconds())
        yield age
    # The oldest entry no checkpoint covers yet: what only the Logbook key protects.
    covered = last["entry"] or 0
    head = LogbookHead.objects.order_by("pk").first()
    uncovered_seconds = 0.0
    if head is not None and head.last_entry_id is not None and head.last_entry_id > covered:
        first = LogbookEntry.objects.filter(id__gt=covered).order_by("id").values_list("created_at", flat=True).first()
        if first is not None:
            uncovered_seconds = max(0.0, (now - first).total_seconds())
    uncovered = GaugeMetricFamily(
        "passport_logbook_unchecked_seconds",
        "Age of the oldest Logbook entry that no signed checkpoint covers yet (0: all are covered).",
    )
    uncovered.add_metric([], uncovered_seconds)
    yield uncovered


def _scheduler() -> Iterator[Metric]:
    try:
        age = scheduler_heartbeat_age()
    except Exception as exc:  # Redis down: the readiness check says so; the metric is just absent.
        logger.warning("metrics: scheduler heartbeat unreadable: %s", exc)
        return
    if age is not None:
        family = GaugeMetricFamily("passport_scheduler_heartbeat_age_seconds", "Since the last scheduler heartbeat.")
        family.add_metric([], age)
        yield family


class PassportCollector(Collector):
    """Reads everything on collect(); nothing is kept in the process."""

    def collect(self) -> Iterator[Metric]:
        yield from _requests_by_status()
        yield from _provisioning()
        yield from _run_command_errors()
        yield from _sessions_and_expiry()
        yield from _recordings()
        yield from _logbook()
        yield from _scheduler()


def metrics_registry() -> CollectorRegistry:
    """A registry of Passport's collector alone (no per-process Python metrics, which would differ)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PassportCollector())
    return registry
