"""Refusals from anonymous clients: written once per source and reason per window, then counted.

The flood test sends garbage through the real SAML endpoints for a sample and through the
real refusal service for the bulk, then runs the real flush task, and checks both the bound
on new Logbook entries and that every refusal is accounted for.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.utils import timezone

from accounts.saml.services import saml_refusal_record
from audit.integrity import logbook_verify
from audit.models import LogbookEntry, RefusalTally
from audit.refusals import OTHER_SOURCES, client_source, logbook_append_aggregated, logbook_refusals_flush
from devcloud.idp import TestIdentityProvider
from workers.tasks import flush_logbook_refusals

IDP = TestIdentityProvider("https://idp.refusals.test/metadata")
# A window boundary (multiples of 300 s since the epoch), plus a little.
T0 = datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)
ACTION = "auth.saml_refused"


@pytest.fixture(autouse=True)
def idp(settings: Any) -> None:
    host = urlsplit(IDP.entity_id).netloc
    settings.PASSPORT_SAML_IDPS = [
        {
            "slug": "customer",
            "name": "Customer SSO",
            "identity_store": "customer",
            "entity_id": IDP.entity_id,
            "sso_url": f"https://{host}/sso",
            "slo_url": f"https://{host}/slo",
            "x509cert": IDP.cert_pem,
        }
    ]
    settings.PASSPORT_REFUSAL_WINDOW_SECONDS = 300
    settings.PASSPORT_REFUSAL_SOURCES_PER_WINDOW = 20
    settings.PASSPORT_TRUSTED_PROXY_COUNT = 0


def refusals() -> Any:
    return LogbookEntry.objects.filter(action=ACTION)


def garbage(client: Client, kind: int, address: str) -> int:
    """One unauthenticated garbage request to a SAML endpoint; a spoofed X-Forwarded-For rides along."""
    extra = {"REMOTE_ADDR": address, "HTTP_X_FORWARDED_FOR": f"10.{kind}.0.{kind}"}
    base = "/accounts/saml/customer"
    requests = [
        lambda: client.post(f"{base}/acs/", {}, **extra),
        lambda: client.post(f"{base}/acs/", {"SAMLResponse": "not base64 at all %%%"}, **extra),
        lambda: client.get(f"{base}/sls/", **extra),
        lambda: client.get(f"{base}/sls/", {"SAMLRequest": "junk"}, **extra),
        lambda: client.get(f"{base}/sls/", {"SAMLResponse": "junk"}, **extra),
        lambda: client.get(f"{base}/acs/finish/", **extra),
    ]
    return requests[kind % len(requests)]().status_code


def test_ten_thousand_garbage_requests_add_a_few_dozen_entries_and_every_one_is_counted(
    db: None, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    before = LogbookEntry.objects.count()

    # A sample through the real views: 30 addresses, every kind of garbage.
    client = Client()
    sample = 300
    for n in range(sample):
        assert garbage(client, n, f"203.0.113.{n % 30}") in {400, 403}
    sampled = set(RefusalTally.objects.values_list("source", flat=True))
    assert sampled <= {f"203.0.113.{n}" for n in range(30)} | {OTHER_SOURCES}, "a spoofed X-Forwarded-For was believed"

    # The bulk through the real service, as the views call it: a botnet of 4,700 addresses.
    reasons = ["no_response", "malformed", "invalid_response", "no_message"]
    for n in range(10_000 - sample):
        address = f"198.51.{n % 4700 // 250}.{n % 250}"
        saml_refusal_record(idp_slug="customer", reason=reasons[n % len(reasons)], source=address)

    written = LogbookEntry.objects.count() - before
    distinct_reasons = RefusalTally.objects.values("reason").distinct().count()
    # 20 (source, reason) pairs, then one "other sources" entry per reason, and nothing else.
    assert written == 20 + RefusalTally.objects.filter(source=OTHER_SOURCES).count()
    assert written <= 20 + distinct_reasons <= 30
    assert sum(RefusalTally.objects.values_list("count", flat=True)) == 10_000
    first = refusals().order_by("id").first()
    assert first is not None and first.detail["source"] == "203.0.113.0" and first.detail["reason"] == "no_response"

    # The window is still open: nothing to summarise yet.
    assert flush_logbook_refusals() == 0
    time_machine.move_to(T0 + timedelta(minutes=6), tick=False)
    assert flush_logbook_refusals() == 1
    assert not RefusalTally.objects.exists()

    summary = refusals().order_by("-id").first()
    assert summary is not None and summary.detail["summary"] is True and summary.actor is None
    assert summary.detail["total"] == 10_000
    assert sum(row["count"] for row in summary.detail["counts"]) == 10_000
    assert LogbookEntry.objects.count() - before == written + 1
    assert flush_logbook_refusals() == 0
    assert logbook_verify().intact


def test_the_first_refusal_is_written_at_once_and_the_rest_counted_into_one_summary(
    world: Any, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    for _ in range(3):
        saml_refusal_record(idp_slug="customer", reason="malformed", source="192.0.2.1", errors=["XMLSyntaxError"])
    saml_refusal_record(idp_slug="customer", reason="no_response", source="192.0.2.1")

    entries = list(refusals().order_by("id"))
    assert [entry.detail["reason"] for entry in entries] == ["malformed", "no_response"]
    assert entries[0].detail["errors"] == ["XMLSyntaxError"]
    assert entries[0].detail["source"] == "192.0.2.1"
    assert entries[0].detail["window_start"] == "2030-01-01T00:00:00+00:00"

    # A new window starts over: its first refusal is written again.
    time_machine.move_to(T0 + timedelta(minutes=5), tick=False)
    saml_refusal_record(idp_slug="customer", reason="malformed", source="192.0.2.1")
    assert refusals().count() == 3

    time_machine.move_to(T0 + timedelta(minutes=6), tick=False)
    assert logbook_refusals_flush() == 1  # only the first window is closed
    summary = refusals().order_by("-id").first()
    assert summary is not None
    assert summary.detail["total"] == 4
    assert summary.detail["counts"] == [
        {"source": "192.0.2.1", "reason": "customer:malformed", "count": 3},
        {"source": "192.0.2.1", "reason": "customer:no_response", "count": 1},
    ]
    assert summary.detail["window_end"] == "2030-01-01T00:05:00+00:00"
    auditor = Client()
    auditor.force_login(world.auditor)
    page = auditor.get("/logbook/", {"action": ACTION})
    assert page.status_code == 200 and "customer:malformed" in page.content.decode()
    # The second window held a single refusal, already written: no summary, the row just goes.
    time_machine.move_to(T0 + timedelta(minutes=11), tick=False)
    assert logbook_refusals_flush() == 0
    assert not RefusalTally.objects.exists()
    assert refusals().count() == 4


def test_past_the_cap_a_folded_refusal_names_no_one(db: None, world: Any, settings: Any, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    settings.PASSPORT_REFUSAL_SOURCES_PER_WINDOW = 1
    named = logbook_append_aggregated(action="test.refused", source="user:1", reason="r", actor=world.requester)
    folded = logbook_append_aggregated(action="test.refused", source="user:2", reason="r", actor=world.member)
    assert named is not None and named.actor == world.requester
    assert folded is not None and folded.actor is None and folded.detail["source"] == OTHER_SOURCES
    assert logbook_append_aggregated(action="test.refused", source="user:3", reason="r", actor=world.outsider) is None


def test_the_client_is_remote_addr_unless_proxies_of_ours_are_configured(settings: Any) -> None:
    factory = RequestFactory()
    spoofed = factory.get("/", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert client_source(spoofed) == "192.0.2.9"
    assert client_source(factory.get("/", REMOTE_ADDR="2001:db8:1:2:3:4:5:6")) == "2001:db8:1:2::/64"
    assert client_source(factory.get("/", REMOTE_ADDR="::ffff:192.0.2.7")) == "192.0.2.7"
    assert client_source(factory.get("/", REMOTE_ADDR="")) == "unknown"

    settings.PASSPORT_TRUSTED_PROXY_COUNT = 1
    # Our proxy appends what it saw; whatever the client wrote before that is not believed.
    behind = factory.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.5")
    assert client_source(behind) == "198.51.100.5"
    assert client_source(factory.get("/", REMOTE_ADDR="10.0.0.2")) == "10.0.0.2"


def test_concurrent_refusals_from_separate_connections_write_one_entry_and_lose_no_count(live_db: None) -> None:
    """Threads with their own database connections stand in for web processes racing on one window."""
    threads, per_thread = 6, 40
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def flood() -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                saml_refusal_record(idp_slug="customer", reason="malformed", source="192.0.2.50")
        except BaseException as error:  # reported by the main thread
            failures.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=flood) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not failures, failures
    assert refusals().count() == 1
    assert RefusalTally.objects.get().count == threads * per_thread
    assert logbook_refusals_flush(now=timezone.now() + timedelta(minutes=11)) == 1
    summary = refusals().order_by("-id").first()
    assert summary is not None and summary.detail["total"] == threads * per_thread


def test_the_flush_is_scheduled(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["flush-logbook-refusals"]
    assert entry["task"] == flush_logbook_refusals.name


def test_a_forwarded_address_is_believed_only_from_a_trusted_proxy(db: None, settings: Any, time_machine: Any) -> None:
    """Past the proxy, straight to a web process: the client's own X-Forwarded-For names nobody."""
    time_machine.move_to(T0, tick=False)
    settings.PASSPORT_TRUSTED_PROXY_COUNT = 1
    settings.PASSPORT_TRUSTED_PROXIES = ["10.1.0.0/16"]
    client = Client()

    assert client.get("/accounts/saml/customer/sls/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert set(RefusalTally.objects.values_list("source", flat=True)) == {"203.0.113.7"}

    assert client.get("/accounts/saml/customer/sls/", REMOTE_ADDR="10.1.0.5", HTTP_X_FORWARDED_FOR="198.51.100.5")
    assert set(RefusalTally.objects.values_list("source", flat=True)) == {"203.0.113.7", "198.51.100.5"}
