"""Going back to an older release's migrations on a populated PostgreSQL database: each step either
puts back what the older schema holds or refuses with a message, never an IntegrityError halfway.

Each test leaves the database migrated to the latest state.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.exceptions import IrreversibleError
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from tests.upgrade.helpers import migrate, migrate_to_latest


@pytest.fixture
def migrated_back_after(transactional_db: None) -> Iterator[None]:
    try:
        yield
    finally:
        migrate_to_latest()


def test_audit_0005_refuses_to_go_back_over_keyed_entries(migrated_back_after: None) -> None:
    """Reversing 0005 dropped key_id; applied again it labelled every keyed entry legacy-sha256, so
    every HMAC entry read as edited and the chain could never verify again."""
    from audit.models import LogbookEntry
    from audit.services import logbook_append

    for n in range(3):
        logbook_append(action="test.entry", actor=None, detail={"n": n})
    first = LogbookEntry.objects.order_by("id").first()
    assert first is not None

    with pytest.raises(IrreversibleError, match=rf"audit 0005 cannot be reversed: Logbook entries from #{first.pk} on"):
        migrate([("audit", "0004_refusal_tally_and_throttle_window")])

    applied = MigrationRecorder(connection).applied_migrations()
    assert ("audit", "0005_logbook_keys_and_checkpoints") in applied
    assert set(LogbookEntry.objects.values_list("key_id", flat=True)) == {"logbook-1"}
    migrate_to_latest()
    call_command("verify_logbook", "--chain-only", "--jobs", "1")  # still intact


def test_audit_0005_goes_back_over_legacy_entries_only(migrated_back_after: None) -> None:
    """Entries written before keyed hashes lose nothing: their key id is the column's default."""
    apps = migrate([("audit", "0004_refusal_tally_and_throttle_window")])
    apps.get_model("audit", "LogbookEntry").objects.create(
        created_at=timezone.now(), actor_label="x", action="old.entry", detail={}, prev_hash="0" * 64, hash="1" * 64
    )
    migrate([("audit", "0005_logbook_keys_and_checkpoints")])
    migrate([("audit", "0004_refusal_tally_and_throttle_window")])


def _ca_key(CaKey: Any, purpose: str, n: int) -> Any:
    return CaKey.objects.create(
        purpose=purpose,
        key_type="ed25519",
        state="active",
        public_key=f"ssh-ed25519 AAAA{n}",
        fingerprint=f"SHA256:fp{n}",
        private_key_encrypted=b"x",
    )


def test_sshca_0003_goes_back_with_a_user_and_a_host_ca(migrated_back_after: None) -> None:
    """Every installation after 0003 has an active Ed25519 user CA and host CA; the older one-active-key-
    per-type constraint refused them. The host CA (the older release has none) is retired, its row kept."""
    apps = migrate([("sshca", "0003_host_ca")])
    CaKey = apps.get_model("sshca", "CaKey")
    user, host = _ca_key(CaKey, "user", 1), _ca_key(CaKey, "host", 2)

    apps = migrate([("sshca", "0002_principal_names_the_grant")])

    keys = {key.pk: key for key in apps.get_model("sshca", "CaKey").objects.all()}
    assert keys[user.pk].state == "active"
    assert keys[host.pk].state == "retired" and keys[host.pk].retired_at is not None


def test_sshca_0003_refuses_to_cut_a_long_principal(migrated_back_after: None) -> None:
    apps = migrate([("sshca", "0003_host_ca")])
    CaKey, IssuedCertificate = apps.get_model("sshca", "CaKey"), apps.get_model("sshca", "IssuedCertificate")
    now = timezone.now()
    IssuedCertificate.objects.create(
        ca_key=_ca_key(CaKey, "host", 3),
        principal=",".join(f"host-{n}.internal.example.test" for n in range(4)),
        key_id="k",
        public_key_fingerprint="SHA256:h",
        valid_after=now,
        valid_before=now,
    )
    with pytest.raises(IrreversibleError, match="sshca 0003 cannot be reversed: 1 issued certificate"):
        migrate([("sshca", "0002_principal_names_the_grant")])
    assert ("sshca", "0003_host_ca") in MigrationRecorder(connection).applied_migrations()


def test_accounts_0016_goes_back_with_an_unsent_claim(migrated_back_after: None) -> None:
    """A claimed receipt not sent yet (sent_at NULL) is normal after 0016; the older schema has sent
    receipts only: it is dropped, so the older release sends that mail."""
    apps = migrate([("accounts", "0016_notification_claim_then_send")])
    Receipt = apps.get_model("accounts", "NotificationReceipt")
    Receipt.objects.create(kind="approved", request_id=1, sent_at=None)
    sent = Receipt.objects.create(kind="approved", request_id=2, sent_at=timezone.now())

    apps = migrate([("accounts", "0015_saml_name_id_key")])

    assert list(apps.get_model("accounts", "NotificationReceipt").objects.values_list("pk", flat=True)) == [sent.pk]


def test_accounts_0016_goes_back_after_an_extension_warning(migrated_back_after: None) -> None:
    """Two "ends soon" receipts for one request (it was extended) are normal after 0016; the older
    schema holds one per kind and request: the latest is kept."""
    apps = migrate([("accounts", "0016_notification_claim_then_send")])
    Receipt = apps.get_model("accounts", "NotificationReceipt")
    now = timezone.now()
    Receipt.objects.create(kind="expiring", request_id=1, expires_at=now, sent_at=now - timedelta(hours=1))
    latest = Receipt.objects.create(kind="expiring", request_id=1, expires_at=now + timedelta(hours=1), sent_at=now)
    other = Receipt.objects.create(kind="expiring", request_id=2, expires_at=now, sent_at=now)

    apps = migrate([("accounts", "0015_saml_name_id_key")])

    kept = apps.get_model("accounts", "NotificationReceipt").objects.order_by("pk").values_list("pk", flat=True)
    assert list(kept) == [latest.pk, other.pk]


def test_accounts_0024_goes_back_after_a_request_was_asked_again(migrated_back_after: None) -> None:
    """Two "awaits approval" receipts for one request (it went back to pending) are normal after 0024;
    the older schema holds one per kind and request: the latest event's is kept."""
    apps = migrate([("accounts", "0024_notification_receipt_events")])
    Receipt = apps.get_model("accounts", "NotificationReceipt")
    now = timezone.now()
    Receipt.objects.create(kind="awaiting_approval", request_id=1, event_id=0, sent_at=now - timedelta(hours=1))
    latest = Receipt.objects.create(kind="awaiting_approval", request_id=1, event_id=42, sent_at=now)
    other = Receipt.objects.create(kind="awaiting_approval", request_id=2, sent_at=now)
    warned = Receipt.objects.create(kind="expiring", request_id=1, expires_at=now, sent_at=now)

    apps = migrate([("accounts", "0023_user_manager_trailed")])

    kept = apps.get_model("accounts", "NotificationReceipt").objects.order_by("pk").values_list("pk", flat=True)
    assert list(kept) == [latest.pk, other.pk, warned.pk]


def _windows_grant(apps: Any, *, account_sid: str | None, status: str) -> Any:
    from tests.upgrade.test_rolling_deploy import _request_and_instance

    request, instance = _request_and_instance(apps, "windows")
    return apps.get_model("requests_app", "Grant").objects.create(
        request=request,
        instance=instance,
        username="rs-abcdefgh",
        platform="windows",
        account_sid=account_sid,
        status=status,
    )


def test_requests_app_0021_refuses_to_go_back_while_a_grant_not_yet_removed_has_a_sid(
    migrated_back_after: None,
) -> None:
    """The release before would look for that grant's account by its name alone, and call a renamed
    one removed: going back waits until the grant is removed."""
    apps = migrate([("requests_app", "0021_grant_account_sid")])
    grant = _windows_grant(apps, account_sid="S-1-5-21-1-2-3-1001", status="removing")

    with pytest.raises(IrreversibleError, match=rf"requests_app 0021 cannot be reversed: 1 Windows grant.*#{grant.pk}"):
        migrate([("requests_app", "0020_request_active_credentials_index")])
    assert ("requests_app", "0021_grant_account_sid") in MigrationRecorder(connection).applied_migrations()

    apps.get_model("requests_app", "Grant").objects.filter(pk=grant.pk).update(status="removed")
    apps = migrate([("requests_app", "0020_request_active_credentials_index")])
    kept = apps.get_model("requests_app", "Grant").objects.get(pk=grant.pk)
    assert kept.status == "removed" and not hasattr(kept, "account_sid")


def test_requests_app_0022_refuses_to_go_back_while_a_grant_not_yet_removed_has_a_uid(
    migrated_back_after: None,
) -> None:
    """The release before would look for that grant's account by its name alone, and call a renamed
    one removed: going back waits until the grant is removed."""
    from tests.upgrade.test_rolling_deploy import _request_and_instance

    apps = migrate([("requests_app", "0022_grant_account_uid")])
    request, instance = _request_and_instance(apps, "linux")
    grant = apps.get_model("requests_app", "Grant").objects.create(
        request=request,
        instance=instance,
        username="rs-abcdefgh",
        platform="linux",
        account_uid=1_900_000_041,
        status="ready",
    )

    with pytest.raises(IrreversibleError, match=rf"requests_app 0022 cannot be reversed: 1 Linux grant.*#{grant.pk}"):
        migrate([("requests_app", "0021_grant_account_sid")])
    assert ("requests_app", "0022_grant_account_uid") in MigrationRecorder(connection).applied_migrations()

    apps.get_model("requests_app", "Grant").objects.filter(pk=grant.pk).update(status="removed")
    apps = migrate([("requests_app", "0021_grant_account_sid")])
    kept = apps.get_model("requests_app", "Grant").objects.get(pk=grant.pk)
    assert kept.status == "removed" and not hasattr(kept, "account_uid")
