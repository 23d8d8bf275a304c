"""AWS accounts in the admin, with their memberships and approval policy inline, and the identity
providers: every row added, changed or deleted is in the Logbook, with its fields before and after."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from accounts.models import ApprovalPolicy, AwsAccount, Membership, SamlIdentity, SamlIdentityProvider
from devcloud.idp import TestIdentityProvider
from tests.audit.admin_forms import add_inline_row, admin_entries, form_data, only_entry, post_ok, superuser_client
from tests.conftest import World

pytestmark = pytest.mark.django_db

ACCOUNTS = "/admin/accounts/awsaccount/"
IDPS = "/admin/accounts/samlidentityprovider/"


def _row(data: dict[str, Any], prefix: str, pk: int) -> str:
    """The prefix of the inline form that edits row pk (memberships-2-...)."""
    for name, values in data.items():
        if name.startswith(f"{prefix}-") and name.endswith("-id") and values == [str(pk)]:
            return name.removesuffix("-id")
    raise AssertionError(f"no {prefix} form for #{pk}")


def test_adding_an_account_with_a_membership_and_a_policy(world: World) -> None:
    client, root = superuser_client()
    url = f"{ACCOUNTS}add/"
    data = form_data(
        client,
        url,
        account_id="333333333333",
        name="Acme Research",
        regions='["eu-west-1"]',
        role_arn="arn:aws:iam::333333333333:role/PassportPortal",
    )
    add_inline_row(data, "memberships", user=str(world.requester.pk), role="admin", can_approve="on")
    add_inline_row(data, "approval_policy", approvals_required="2")
    post_ok(client, url, data)

    account = AwsAccount.objects.get(account_id="333333333333")
    added = only_entry("admin.added", "accounts.awsaccount")
    assert added.actor == root and added.account_id == "333333333333"
    assert added.detail["fields"]["name"] == "Acme Research" and added.detail["fields"]["regions"] == ["eu-west-1"]
    membership = only_entry("admin.added", "accounts.membership")
    assert membership.account_id == "333333333333" and membership.detail["via"] == f"accounts.awsaccount #{account.pk}"
    assert membership.detail["fields"]["role"] == "admin" and membership.detail["fields"]["can_approve"] is True
    assert membership.detail["fields"]["user"] == f"alice (#{world.requester.pk})"
    policy = only_entry("admin.added", "accounts.approvalpolicy")
    assert policy.detail["fields"]["approvals_required"] == 2
    assert ApprovalPolicy.objects.get(account=account).approvals_required == 2


def test_memberships_changed_added_and_removed_inline(world: World) -> None:
    client, _ = superuser_client()
    prod = world.prod
    url = f"{ACCOUNTS}{prod.pk}/change/"
    data = form_data(client, url, name="Acme Prod")
    alice = _row(data, "memberships", Membership.objects.get(user=world.requester, account=prod).pk)
    oscar = Membership.objects.get(user=world.observer, account=prod)
    data.update({f"{alice}-role": ["observer"], f"{_row(data, 'memberships', oscar.pk)}-DELETE": ["on"]})
    add_inline_row(data, "memberships", user=str(world.outsider.pk), role="admin")
    post_ok(client, url, data)

    via = f"accounts.awsaccount #{prod.pk}"
    assert only_entry("admin.changed", "accounts.awsaccount").detail["changes"] == {
        "name": {"before": "Acme Production", "after": "Acme Prod"}
    }
    changed = only_entry("admin.changed", "accounts.membership")
    assert changed.detail["via"] == via and changed.account_id == prod.account_id
    assert changed.detail["changes"] == {"role": {"before": "admin", "after": "observer"}}
    removed = only_entry("admin.deleted", "accounts.membership")
    assert removed.detail["object_id"] == str(oscar.pk) and removed.detail["fields"]["role"] == "observer"
    assert removed.detail["fields"]["user"] == f"oscar (#{world.observer.pk})"
    added = only_entry("admin.added", "accounts.membership")
    assert added.detail["fields"]["user"] == f"mallory (#{world.outsider.pk})" and added.detail["via"] == via


def test_an_approval_policy_set_and_changed_inline(world: World) -> None:
    client, _ = superuser_client()
    prod = world.prod
    url = f"{ACCOUNTS}{prod.pk}/change/"
    data = form_data(client, url)
    add_inline_row(data, "approval_policy", deny_without_ticket="on")
    post_ok(client, url, data)
    policy = ApprovalPolicy.objects.get(account=prod)
    added = only_entry("admin.added", "accounts.approvalpolicy")
    assert added.account_id == prod.account_id and added.detail["fields"]["deny_without_ticket"] is True
    assert admin_entries("admin.changed") == []  # the account itself did not change

    post_ok(
        client,
        url,
        form_data(
            client,
            url,
            **{"approval_policy-0-approvals_required": "2", "approval_policy-0-deny_over_duration": "04:00:00"},
        ),
    )
    changed = only_entry("admin.changed", "accounts.approvalpolicy")
    assert changed.detail["object_id"] == str(policy.pk) and changed.detail["via"] == f"accounts.awsaccount #{prod.pk}"
    assert changed.detail["changes"] == {
        "approvals_required": {"before": 1, "after": 2},
        "deny_over_duration": {"before": None, "after": "4:00:00"},
    }


def test_deleting_an_account_records_it_and_what_went_with_it(world: World) -> None:
    client, _ = superuser_client()
    staging = world.staging

    post_ok(client, f"{ACCOUNTS}{staging.pk}/delete/", {"post": "yes"})

    entry = only_entry("admin.deleted", "accounts.awsaccount")
    assert entry.account_id == "222222222222" and entry.detail["fields"]["name"] == "Acme Staging"
    assert entry.detail["also_deleted"] == {"accounts.membership": 1, "requests_app.instance": 1}


def _fingerprint(pem: str) -> str:
    """As `openssl x509 -noout -fingerprint -sha256` prints it, by the cryptography library."""
    digest = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256())
    return "SHA256:" + ":".join(f"{byte:02X}" for byte in digest)


def test_identity_providers_record_their_certificate_by_its_fingerprint() -> None:
    """The certificate is public, but its text tells an auditor nothing: the trail has its SHA-256
    fingerprint, before and after a rotation, to compare with the IdP's metadata."""
    first, rotated = TestIdentityProvider("https://idp.corp.example/metadata"), TestIdentityProvider("https://x")
    client, _ = superuser_client()
    add = f"{IDPS}add/"
    fields = {
        "slug": "corp",
        "name": "Corp SSO",
        "identity_store": "customer",
        "entity_id": "https://idp.corp.example/metadata",
        "sso_url": "https://idp.corp.example/sso",
        "x509cert": first.cert_pem,
    }
    post_ok(client, add, form_data(client, add, **fields))
    idp = SamlIdentityProvider.objects.get(slug="corp")
    added = only_entry("admin.added", "accounts.samlidentityprovider")
    assert added.detail["fields"]["x509cert"] == _fingerprint(first.cert_pem)
    assert added.detail["fields"]["sso_url"] == fields["sso_url"]

    url = f"{IDPS}{idp.pk}/change/"
    # Rotated, and pasted as python3-saml also takes it: the base64 body alone, on one line.
    body = "".join(rotated.cert_pem.strip().splitlines()[1:-1])
    post_ok(client, url, form_data(client, url, name="Corp SSO (new)", x509cert=body, allow_idp_initiated="on"))
    assert only_entry("admin.changed", "accounts.samlidentityprovider").detail["changes"] == {
        "allow_idp_initiated": {"before": False, "after": True},
        "name": {"before": "Corp SSO", "after": "Corp SSO (new)"},
        "x509cert": {"before": _fingerprint(first.cert_pem), "after": _fingerprint(rotated.cert_pem)},
        # A new certificate: what the old one signed in ends (accounts.saml.withdrawal).
        "trust_generation": {"before": 0, "after": 1},
    }

    # Text that is no certificate is still seen to change, by a digest of the text.
    post_ok(client, url, form_data(client, url, x509cert="not a certificate"))
    changed = admin_entries("admin.changed", "accounts.samlidentityprovider")[-1].detail["changes"]["x509cert"]
    assert changed["before"] == _fingerprint(rotated.cert_pem) and changed["after"].startswith("not a certificate")

    post_ok(client, f"{IDPS}{idp.pk}/delete/", {"post": "yes"})
    deleted = only_entry("admin.deleted", "accounts.samlidentityprovider").detail["fields"]["x509cert"]
    assert deleted.startswith("not a certificate, text SHA256:")
    recorded = json.dumps([entry.detail for entry in admin_entries()])
    assert body[:40] not in recorded and "BEGIN CERTIFICATE" not in recorded


def test_saml_identities_added_changed_and_deleted(world: World) -> None:
    client, _ = superuser_client()
    add = "/admin/accounts/samlidentity/add/"
    fields = {
        "user": str(world.requester.pk),
        "identity_store": "customer",
        "name_id": "alice@corp",
        "idp_slug": "corp",
    }
    post_ok(client, add, form_data(client, add, **fields))
    identity = SamlIdentity.objects.get(name_id="alice@corp")
    assert only_entry("admin.added", "accounts.samlidentity").detail["fields"]["user"] == (
        f"alice (#{world.requester.pk})"
    )

    # Re-pointing a NameID at another person is exactly what an auditor needs to see.
    url = f"/admin/accounts/samlidentity/{identity.pk}/change/"
    post_ok(client, url, form_data(client, url, user=str(world.outsider.pk)))
    assert only_entry("admin.changed", "accounts.samlidentity").detail["changes"] == {
        "user": {"before": f"alice (#{world.requester.pk})", "after": f"mallory (#{world.outsider.pk})"}
    }

    post_ok(client, f"/admin/accounts/samlidentity/{identity.pk}/delete/", {"post": "yes"})
    assert only_entry("admin.deleted", "accounts.samlidentity").detail["fields"]["name_id"] == "alice@corp"


@pytest.mark.urls("tests.audit.admin_urls")
def test_a_model_registered_later_the_plain_way_is_recorded_when_listed_and_edited(world: World) -> None:
    """list_editable saves without loading each object first; the change is still before/after."""
    client, _ = superuser_client()
    changelist = "/check-admin/accounts/membership/"
    memberships = list(Membership.objects.order_by("-pk"))  # the admin's default order
    data: dict[str, str] = {
        "form-TOTAL_FORMS": str(len(memberships)),
        "form-INITIAL_FORMS": str(len(memberships)),
        "_save": "Save",
    }
    for index, membership in enumerate(memberships):
        data[f"form-{index}-id"] = str(membership.pk)
        data[f"form-{index}-role"] = "none" if membership.user == world.observer else membership.role

    assert client.post(changelist, data).status_code == 302

    oscar = Membership.objects.get(user=world.observer)
    assert oscar.role == "none"
    entry = only_entry("admin.changed", "accounts.membership")
    assert entry.detail["object_id"] == str(oscar.pk) and entry.account_id == world.prod.account_id
    assert entry.detail["changes"] == {"role": {"before": "observer", "after": "none"}}
