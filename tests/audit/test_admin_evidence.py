"""Evidence in the admin: recordings are shown and never changed or deleted, not even by a superuser;
the Logbook, certificates and approvals are not in the admin at all; nothing the admin deletes may
take evidence with it."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from accounts.models import AwsAccount, User
from audit.admin_trail import AuditedAdminMixin, AuditedInlineMixin, EvidenceAdminMixin, EvidenceInlineMixin, mixins
from audit.models import LogbookEntry
from passport_portal.admin_site import PassportAdminSite
from requests_app.models import Grant
from terminal import services as terminal_services
from terminal.models import TerminalSession
from tests.audit.admin_forms import admin_entries, superuser_client
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db

SESSIONS = "/admin/terminal/terminalsession/"


@pytest.fixture
def recording(world: World) -> TerminalSession:
    return terminal_services.terminal_session_start(
        user=world.requester, grant=make_active_grant(world), ssm_session_id="s-1", recording_path="rec/1.cast"
    )


def test_a_superuser_sees_a_recording_and_cannot_change_it(recording: TerminalSession) -> None:
    client, _ = superuser_client()
    url = f"{SESSIONS}{recording.pk}/change/"

    page = client.get(url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content and b"/delete/" not in page.content

    refused = client.post(url, {"recording_path": "elsewhere.cast", "end_reason": "edited", "bytes_in": "0"})
    assert refused.status_code == 403
    recording.refresh_from_db()
    assert recording.recording_path == "rec/1.cast" and recording.end_reason == ""
    assert admin_entries() == []


def test_a_superuser_cannot_delete_a_recording_one_by_one_or_in_bulk(recording: TerminalSession) -> None:
    client, _ = superuser_client()

    assert client.get(f"{SESSIONS}{recording.pk}/delete/").status_code == 403
    assert client.post(f"{SESSIONS}{recording.pk}/delete/", {"post": "yes"}).status_code == 403
    changelist = client.get(SESSIONS)
    assert changelist.status_code == 200 and b"delete_selected" not in changelist.content
    bulk = client.post(SESSIONS, {"action": "delete_selected", "_selected_action": [str(recording.pk)], "post": "yes"})
    assert bulk.status_code in (200, 302)

    assert TerminalSession.objects.filter(pk=recording.pk).exists()
    assert admin_entries() == []


@pytest.mark.parametrize(
    "path",
    ["audit/logbookentry", "audit/logbookhead", "sshca/issuedcertificate", "accounts/requestapproval"],
)
def test_the_logbook_certificates_and_approvals_are_not_in_the_admin(world: World, path: str) -> None:
    client, _ = superuser_client()
    entry = LogbookEntry.objects.first()
    assert client.get(f"/admin/{path}/").status_code == 404
    assert client.post(f"/admin/{path}/{entry.pk if entry else 1}/delete/", {"post": "yes"}).status_code == 404


def test_a_deletion_that_would_take_evidence_with_it_is_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Today no evidence is deleted by a cascade (its references protect it); the admin refuses anyway."""
    monkeypatch.setattr(mixins, "EVIDENCE_MODELS", mixins.EVIDENCE_MODELS | {"accounts.membership"})
    client, _ = superuser_client()

    one = client.post(f"/admin/accounts/awsaccount/{world.staging.pk}/delete/", {"post": "yes"})
    assert one.status_code == 200 and b"Cannot delete" in one.content
    selected = [str(world.observer.pk), str(world.outsider.pk)]
    bulk = client.post(
        "/admin/accounts/user/", {"action": "delete_selected", "_selected_action": selected, "post": "yes"}
    )
    assert bulk.status_code == 200 and b"Cannot delete" in bulk.content

    assert AwsAccount.objects.filter(pk=world.staging.pk).exists()
    assert User.objects.filter(pk__in=selected).count() == 2
    assert admin_entries() == []


def test_the_site_makes_any_evidence_admin_read_only_and_audits_the_rest(world: World) -> None:
    """Whoever registers a model later, with a plain ModelAdmin, gets the same rules."""

    class GrantSessions(admin.TabularInline):
        model = TerminalSession

    class GrantAdmin(admin.ModelAdmin):
        inlines = [GrantSessions]

    site = PassportAdminSite(name="evidence-check")
    site.register(LogbookEntry)
    site.register(Grant, GrantAdmin)
    request = RequestFactory().get("/")
    request.user = User.objects.create_superuser("root", "root@example.test", "pw")

    logbook = site._registry[LogbookEntry]
    assert isinstance(logbook, EvidenceAdminMixin) and isinstance(logbook, AuditedAdminMixin)
    assert not logbook.has_add_permission(request)
    assert not logbook.has_change_permission(request) and not logbook.has_delete_permission(request)
    assert logbook.get_actions(request) == {}

    grants = site._registry[Grant]
    assert isinstance(grants, AuditedAdminMixin) and not isinstance(grants, EvidenceAdminMixin)
    assert "delete_selected" in grants.get_actions(request)
    [sessions] = grants.get_inline_instances(request)
    assert isinstance(sessions, EvidenceInlineMixin) and isinstance(sessions, AuditedInlineMixin)
    assert not sessions.has_add_permission(request, None)
    assert not sessions.has_change_permission(request) and not sessions.has_delete_permission(request)
