"""Access-deciding state changed by a save outside the admin is on the record once (accounts.change_trail).

Plain django_db: the Logbook's triggers refuse the DELETE a transactional test's flush would run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from django.utils import timezone

from accounts.authentication import hash_token
from accounts.change_trail import changes_recorded_elsewhere
from accounts.mfa import seal_mfa_secret
from accounts.models import ApiToken, ApprovalPolicy, AwsAccount, Membership, SamlIdentityProvider, User
from audit.models import LogbookEntry
from tests.accounts.test_saml import CUSTOMER, idp_entry
from tests.audit.admin_forms import form_data, superuser_client
from tests.conftest import World

pytestmark = pytest.mark.django_db

CERT = "-----BEGIN CERTIFICATE-----\nMIIBattacker\n-----END CERTIFICATE-----"


def _mark() -> int:
    last = LogbookEntry.objects.order_by("-pk").first()
    return last.pk if last else 0


def _since(mark: int) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(pk__gt=mark).order_by("pk"))


def _only(mark: int, action: str) -> LogbookEntry:
    entries = _since(mark)
    assert [entry.action for entry in entries] == [action]
    return entries[0]


def test_a_policy_loosened_by_a_script_is_on_record_with_before_and_after(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod, approvals_required=2)
    mark = _mark()
    policy = ApprovalPolicy.objects.get(account=world.prod)
    policy.approvals_required = 1
    policy.auto_approve = True
    policy.auto_approve_max_duration = timedelta(hours=12)
    policy.save()

    entry = _only(mark, "approval_policy.changed")
    assert entry.actor_label == "system" and entry.account_id == world.prod.account_id
    assert entry.detail["changes"] == {
        "approvals_required": {"before": 2, "after": 1},
        "auto_approve": {"before": False, "after": True},
        "auto_approve_max_duration": {"before": "2:00:00", "after": "12:00:00"},
    }


def test_a_policy_tightened_by_a_script_is_on_record_too(world: World) -> None:
    ApprovalPolicy.objects.create(account=world.prod)
    mark = _mark()
    policy = ApprovalPolicy.objects.get(account=world.prod)
    policy.deny_admin_rights = True
    policy.save()
    assert _only(mark, "approval_policy.changed").detail["changes"] == {
        "deny_admin_rights": {"before": False, "after": True}
    }


def test_an_account_unmoderated_by_a_script_is_on_record_by_who_the_save_names(world: World) -> None:
    AwsAccount.objects.filter(pk=world.prod.pk).update(require_session_join=True, cli_sessions="record")
    mark = _mark()
    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.require_session_join = False
    account.cli_sessions = AwsAccount.CliSessions.DIRECT
    account.role_arn = "arn:aws:iam::111111111111:role/SomethingElse"
    account.changed_by = world.approver  # type: ignore[attr-defined]
    account.save()

    entry = _only(mark, "account.changed")
    assert entry.actor_id == world.approver.pk and entry.account_id == world.prod.account_id
    changes = entry.detail["changes"]
    assert changes["require_session_join"] == {"before": True, "after": False}
    assert changes["cli_sessions"] == {"before": "record", "after": "direct"}
    assert changes["role_arn"]["after"] == "arn:aws:iam::111111111111:role/SomethingElse"


def test_a_save_that_changes_nothing_watched_writes_nothing(world: World) -> None:
    mark = _mark()
    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.inventory_synced_at = timezone.now()
    account.save()
    person = User.objects.get(pk=world.requester.pk)
    person.last_login = timezone.now()
    person.save(update_fields=["last_login"])
    person.save()
    assert _since(mark) == []


@pytest.mark.parametrize("active_before", [True, False])
def test_a_person_activated_or_deactivated_by_a_script_is_on_record(world: World, active_before: bool) -> None:
    User.objects.filter(pk=world.outsider.pk).update(is_active=active_before)
    mark = _mark()
    person = User.objects.get(pk=world.outsider.pk)
    person.is_active = not active_before
    person.save()
    entries = [entry for entry in _since(mark) if entry.action == "person.changed"]
    assert len(entries) == 1
    assert entries[0].detail["changes"] == {"is_active": {"before": active_before, "after": not active_before}}
    assert entries[0].detail["object_id"] == str(world.outsider.pk)


def test_auditor_and_staff_given_by_a_script_are_on_record(world: World) -> None:
    mark = _mark()
    person = User.objects.get(pk=world.outsider.pk)
    person.is_auditor = True
    person.is_staff = True
    person.save()
    assert _only(mark, "person.changed").detail["changes"] == {
        "is_auditor": {"before": False, "after": True},
        "is_staff": {"before": False, "after": True},
    }


def test_a_membership_raised_by_a_script_is_on_record(world: World) -> None:
    mark = _mark()
    membership = Membership.objects.get(user=world.observer, account=world.prod)
    membership.role = Membership.Role.ADMIN
    membership.can_approve = True
    membership.save()
    entry = _only(mark, "membership.changed")
    assert entry.account_id == world.prod.account_id
    assert entry.detail["changes"] == {
        "can_approve": {"before": False, "after": True},
        "role": {"before": "observer", "after": "admin"},
    }


def _customer_idp(settings: Any) -> tuple[SamlIdentityProvider, int]:
    """The customer's identity provider, saved before the mark and loaded again as a script would; the mark."""
    settings.PASSPORT_SAML_IDPS = []
    idp = SamlIdentityProvider.objects.create(**idp_entry("customer", CUSTOMER, "customer"))
    mark = _mark()
    return SamlIdentityProvider.objects.get(pk=idp.pk), mark


def test_an_idp_certificate_swapped_by_a_script_is_on_record_by_fingerprint(settings: Any, world: World) -> None:
    idp, mark = _customer_idp(settings)
    idp.x509cert = CERT
    idp.sso_url = "https://idp.attacker.example/sso"
    idp.allow_idp_initiated = True
    idp.save()
    changes = _only(mark, "saml_idp.changed").detail["changes"]
    # A new certificate moves the IdP's trust generation on (its sessions end: accounts.saml.withdrawal).
    assert set(changes) == {"x509cert", "sso_url", "allow_idp_initiated", "trust_generation"}
    assert changes["trust_generation"] == {"before": 0, "after": 1}
    assert changes["x509cert"]["before"].startswith("SHA256:") and "MIIB" not in str(changes)
    assert changes["sso_url"]["after"] == "https://idp.attacker.example/sso"


def test_an_idp_disabled_by_a_script_is_on_record(settings: Any, world: World) -> None:
    idp, mark = _customer_idp(settings)
    idp.enabled = False
    idp.save()
    assert _only(mark, "saml_idp.changed").detail["changes"] == {
        "enabled": {"before": True, "after": False},
        "trust_generation": {"before": 0, "after": 1},  # what it signed in stays out once enabled again
    }


def _token(person: User) -> ApiToken:
    return ApiToken.objects.create(
        user=person, name="laptop", token_hash=hash_token("raw-token-1"), expires_at=timezone.now() + timedelta(days=1)
    )


def test_a_totp_secret_replaced_in_place_is_on_record_and_ends_the_cli_tokens(world: World) -> None:
    person = world.requester
    totp = Authenticator.objects.create(
        user=person, type=Authenticator.Type.TOTP, data={"secret": seal_mfa_secret("JBSWY3DPEHPK3PXP")}
    )
    token = _token(person)
    mark = _mark()
    totp = Authenticator.objects.get(pk=totp.pk)
    totp.data = {"secret": seal_mfa_secret("KRSXG5CTMVRXEZLU")}
    totp.save()
    entries = [entry for entry in _since(mark) if entry.action == "authenticator.changed"]
    assert len(entries) == 1 and entries[0].detail["changes"] == {"secret": "(changed)"}
    assert "KRSXG5" not in str(entries[0].detail)
    assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_a_second_factor_resealed_or_used_is_no_change(world: World) -> None:
    person = world.requester
    totp = Authenticator.objects.create(
        user=person, type=Authenticator.Type.TOTP, data={"secret": seal_mfa_secret("JBSWY3DPEHPK3PXP")}
    )
    codes = Authenticator.objects.create(
        user=person, type=Authenticator.Type.RECOVERY_CODES, data={"seed": seal_mfa_secret("ab" * 20), "used_mask": 0}
    )
    token = _token(person)
    mark = _mark()
    totp.data = {"secret": seal_mfa_secret("JBSWY3DPEHPK3PXP")}  # the same secret sealed anew
    totp.save()
    totp.record_usage()
    codes.data["used_mask"] = 1
    codes.save()
    assert _since(mark) == []
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_a_service_that_records_its_own_entry_gets_no_second(world: World) -> None:
    mark = _mark()
    person = User.objects.get(pk=world.outsider.pk)
    person.is_auditor = True
    with changes_recorded_elsewhere():
        person.save()
    assert _since(mark) == []


def test_a_change_in_the_admin_is_recorded_by_its_trail_alone(world: World) -> None:
    client, _root = superuser_client()
    url = f"/admin/accounts/awsaccount/{world.prod.pk}/change/"
    data = form_data(client, url)
    data["require_session_join"] = ["on"]
    data["cli_sessions"] = ["record"]
    mark = _mark()
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    actions = [entry.action for entry in _since(mark)]
    assert "admin.changed" in actions and "account.changed" not in actions


def test_a_persons_admin_change_is_recorded_by_its_trail_alone(world: World) -> None:
    client, _root = superuser_client()
    url = f"/admin/accounts/user/{world.outsider.pk}/change/"
    data = form_data(client, url)
    data["is_auditor"] = ["on"]
    mark = _mark()
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    actions = [entry.action for entry in _since(mark)]
    assert actions == ["admin.changed"]


def test_a_signed_in_page_names_its_person(world: World) -> None:
    # A page (not the admin) whose work saves a watched field names whoever is signed in.
    from allauth.core import context
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = world.approver
    mark = _mark()
    with context.request_context(request):
        membership = Membership.objects.get(user=world.observer, account=world.prod)
        membership.can_approve = True
        membership.save()
    assert _only(mark, "membership.changed").actor_id == world.approver.pk
