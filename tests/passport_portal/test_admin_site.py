"""Every ModelAdmin and inline on the admin site records its changes in the Logbook (audit.admin_trail),
evidence is read-only there, and every registered model has its admin trail tested."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from accounts.models import User
from audit.admin_trail import (
    AuditedAdminMixin,
    AuditedInlineMixin,
    EvidenceAdminMixin,
    EvidenceInlineMixin,
    is_evidence,
)
from passport_portal.admin_site import PassportAdminSite

# The models on the admin site and the tests that post their admin forms. Registering another
# model fails here until it is added, with a test of its add / change / delete in the Logbook.
TESTED_ADMIN_MODELS = {
    "accounts.user": "tests/audit/test_admin_trail_people.py",
    "auth.group": "tests/audit/test_admin_trail_people.py",
    "account.emailaddress": "tests/audit/test_admin_trail_people.py",
    "mfa.authenticator": "tests/audit/test_admin_trail_people.py",
    "accounts.awsaccount": "tests/audit/test_admin_trail_accounts.py",  # memberships and policy inline
    "accounts.samlidentityprovider": "tests/audit/test_admin_trail_accounts.py",
    "accounts.samlidentity": "tests/audit/test_admin_trail_accounts.py",
    "accounts.apitoken": "tests/accounts/test_cli_tokens.py",  # read-only; revoked by an action
    "terminal.terminalsession": "tests/audit/test_admin_evidence.py",  # evidence: refused
    "requests_app.grant": "tests/requests_app/test_windows_account_sid.py",  # read-only: refused
}


@pytest.fixture
def superuser_request(db: None) -> object:
    request = RequestFactory().get("/admin/")
    request.user = User.objects.create_superuser("root", "root@example.test", "pw")
    return request


def test_the_admin_site_is_passports() -> None:
    assert isinstance(admin.site, PassportAdminSite)


def test_every_registered_admin_and_inline_is_audited(superuser_request: object) -> None:
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        assert isinstance(model_admin, AuditedAdminMixin), f"{label}: {type(model_admin).__name__} is not audited"
        for inline in model_admin.inlines:
            assert issubclass(inline, AuditedInlineMixin), f"{label}: inline {inline.__name__} is not audited"
        for instance in model_admin.get_inline_instances(superuser_request):
            assert isinstance(instance, AuditedInlineMixin), f"{label}: inline {type(instance).__name__}"
            if is_evidence(instance.model):
                assert isinstance(instance, EvidenceInlineMixin)
                assert not instance.has_add_permission(superuser_request, None)
                assert not instance.has_change_permission(superuser_request)
                assert not instance.has_delete_permission(superuser_request)


def test_evidence_on_the_site_is_read_only_for_a_superuser(superuser_request: object) -> None:
    evidence = [(model, model_admin) for model, model_admin in admin.site._registry.items() if is_evidence(model)]
    assert [model._meta.label_lower for model, _ in evidence] == ["terminal.terminalsession"]
    for model, model_admin in evidence:
        assert isinstance(model_admin, EvidenceAdminMixin), model._meta.label_lower
        assert model_admin.has_view_permission(superuser_request)
        assert not model_admin.has_add_permission(superuser_request)
        assert not model_admin.has_change_permission(superuser_request)
        assert not model_admin.has_delete_permission(superuser_request)
        assert model_admin.get_actions(superuser_request) == {}


def test_every_registered_model_has_its_admin_trail_tested() -> None:
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert registered == set(TESTED_ADMIN_MODELS)
