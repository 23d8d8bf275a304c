"""The REST API: every endpoint, scoped per person, with the services underneath for real."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.authentication import hash_token
from accounts.models import ApiToken, ApprovalPolicy, User
from fleet import InstanceRecord
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.conftest import World
from tests.factories import make_instance, make_membership, make_user
from tests.fakes.fleet import FakeFleet

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Autouse, so it applies before `world` creates its users: the default PBKDF2 costs ~0.5 s a user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def signed_in(client: APIClient, user: User) -> APIClient:
    client.force_authenticate(user)
    return client


def make_request(
    world: World, *, requester: User | None = None, instances: list[Instance] | None = None, **extra: Any
) -> AccessRequest:
    return services.access_request_create(
        requester=requester or world.requester,
        account=world.prod,
        instances=instances or [world.web],
        reason=extra.pop("reason", "Look at the deploy logs"),
        **extra,
    )


def make_active(access_request: AccessRequest, *, extended_by: timedelta = timedelta(0)) -> AccessRequest:
    """Put a request where provisioning would leave it: active, its grants ready."""
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE,
        activated_at=now,
        expires_at=now + access_request.duration + extended_by,
        extended_by=extended_by,
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    access_request.refresh_from_db()
    return access_request


def create_payload(world: World, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "account": world.prod.account_id,
        "instances": [world.web.instance_id],
        "reason": "Check the nginx config",
    }
    payload.update(overrides)
    return payload


# --- Authentication and errors --------------------------------------------------------


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/accounts/"),
        ("get", "/api/accounts/111111111111/instances/"),
        ("post", "/api/accounts/111111111111/sync/"),
        ("get", "/api/requests/"),
        ("post", "/api/requests/"),
        ("get", "/api/requests/1/"),
        ("post", "/api/requests/1/approve/"),
        ("get", "/api/approvals/"),
    ],
)
def test_anonymous_is_refused(world: World, client: APIClient, method: str, url: str) -> None:
    response = getattr(client, method)(url, {}, format="json") if method == "post" else client.get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "detail" in response.json()


def test_bearer_token_authenticates(world: World, client: APIClient) -> None:
    raw = secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=world.requester, name="cli", token_hash=hash_token(raw), expires_at=timezone.now() + timedelta(days=1)
    )
    response = client.get("/api/accounts/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert {row["account_id"] for row in response.json()} == {"111111111111", "222222222222"}


def test_schema_describes_the_api(world: World, client: APIClient) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    for path in (
        "/api/accounts/",
        "/api/accounts/{account_id}/instances/",
        "/api/accounts/{account_id}/sync/",
        "/api/requests/",
        "/api/requests/{id}/",
        "/api/requests/{id}/approve/",
        "/api/requests/{id}/reject/",
        "/api/requests/{id}/cancel/",
        "/api/requests/{id}/extend/",
        "/api/requests/{id}/complete/",
        "/api/approvals/",
    ):
        assert path in schema["paths"], path
    components = schema["components"]["schemas"]
    assert set(components["RequestCreateInput"]["properties"]) == {
        "account",
        "instances",
        "reason",
        "ticket",
        "duration_minutes",
        "admin_rights",
    }
    assert "actions" in components["AccessRequestOutput"]["properties"]
    assert "bearerAuth" in schema["components"]["securitySchemes"]


# --- Accounts and instances -----------------------------------------------------------


def test_accounts_lists_role_and_approval(world: World, client: APIClient) -> None:
    response = signed_in(client, world.approver).get("/api/accounts/")
    assert response.status_code == 200
    assert response.json() == [
        {
            "account_id": "111111111111",
            "name": "Acme Production",
            "regions": ["us-east-1"],
            "role": "admin",
            "role_label": "Admin",
            "can_request": True,
            "can_approve": True,
            "inventory_synced_at": None,
            "forward_ports": [22, 3389],
            "forward_destinations": [],
            "cli_sessions": "record",
        }
    ]


def test_accounts_for_observer_outsider_and_auditor(world: World, client: APIClient) -> None:
    observer_rows = signed_in(client, world.observer).get("/api/accounts/").json()
    assert [(row["account_id"], row["role"], row["can_request"], row["can_approve"]) for row in observer_rows] == [
        ("111111111111", "observer", False, False)
    ]
    assert signed_in(client, world.outsider).get("/api/accounts/").json() == []
    auditor_rows = signed_in(client, world.auditor).get("/api/accounts/").json()
    assert {(row["account_id"], row["role"]) for row in auditor_rows} == {
        ("111111111111", "none"),
        ("222222222222", "none"),
    }


def test_instances_say_which_are_available(world: World, client: APIClient) -> None:
    response = signed_in(client, world.requester).get("/api/accounts/111111111111/instances/")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()["results"]}
    assert set(rows) == {"web-1", "db-1", "legacy-1", "offline-1", "unmanaged-1", "win-1"}
    assert rows["web-1"]["available"] is True
    assert rows["web-1"]["problem"] is None
    assert rows["web-1"]["instance_id"] == world.web.instance_id
    assert rows["legacy-1"]["available"] is False
    assert "SSM Agent 2.3.100.0" in rows["legacy-1"]["problem"]
    assert "not managed" in rows["unmanaged-1"]["problem"]
    assert "ConnectionLost" in rows["offline-1"]["problem"]


def test_instances_search_and_gone_instances(world: World, client: APIClient) -> None:
    make_instance(world.prod, "web-gone", gone_at=timezone.now())
    response = signed_in(client, world.requester).get("/api/accounts/111111111111/instances/", {"search": "web"})
    assert [row["name"] for row in response.json()["results"]] == ["web-1"]


def test_instances_refused_to_observer_with_role(world: World, client: APIClient) -> None:
    response = signed_in(client, world.observer).get("/api/accounts/111111111111/instances/")
    assert response.status_code == 403
    assert "Observer" in response.json()["detail"]


def test_instances_refused_to_auditor_without_role(world: World, client: APIClient) -> None:
    response = signed_in(client, world.auditor).get("/api/accounts/111111111111/instances/")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "You have no role on Acme Production (111111111111); only Admin may request access."
    }


def test_instances_of_an_invisible_account_are_404(world: World, client: APIClient) -> None:
    assert signed_in(client, world.outsider).get("/api/accounts/111111111111/instances/").status_code == 404
    assert signed_in(client, world.requester).get("/api/accounts/999999999999/instances/").status_code == 404
    assert signed_in(client, world.requester).get("/api/accounts/not-an-id/instances/").status_code == 404


def test_sync_by_approver_returns_counts(world: World, client: APIClient, fake_fleet: FakeFleet) -> None:
    records = [
        InstanceRecord(
            instance_id=world.web.instance_id,
            region="us-east-1",
            name="web-1",
            ssm_managed=True,
            ping_status="Online",
            agent_version="3.3.1142.0",
        ),
        InstanceRecord(instance_id="i-0123456789abcdef0", region="us-east-1", name="new-1"),
    ]
    fake_fleet.holds(records)
    response = signed_in(client, world.approver).post("/api/accounts/111111111111/sync/")
    assert response.status_code == 200
    # Everything in prod but web-1 is gone; new-1 was added.
    assert response.json() == {"account_id": "111111111111", "seen": 2, "added": 1, "gone": 5, "errors": []}
    assert Instance.objects.filter(account=world.prod, instance_id="i-0123456789abcdef0").exists()


def test_sync_reports_region_errors(world: World, client: APIClient, fake_fleet: FakeFleet) -> None:
    fake_fleet.failing = True
    root = make_user("root", is_superuser=True)
    response = signed_in(client, root).post("/api/accounts/222222222222/sync/")
    assert response.status_code == 200
    assert response.json()["errors"] == ["us-east-1: AccessDenied"]


def test_sync_refused_to_non_approvers(world: World, client: APIClient, fake_fleet: FakeFleet) -> None:
    response = signed_in(client, world.requester).post("/api/accounts/111111111111/sync/")
    assert response.status_code == 403
    assert "approvers of Acme Production" in response.json()["detail"]
    assert signed_in(client, world.outsider).post("/api/accounts/111111111111/sync/").status_code == 404
    assert fake_fleet.accounts == []  # never reached the fleet


# --- Creating requests ----------------------------------------------------------------


def test_create_returns_the_request(world: World, client: APIClient) -> None:
    response = signed_in(client, world.requester).post(
        "/api/requests/",
        create_payload(
            world,
            instances=[world.web.instance_id, world.windows.instance_id],
            ticket="INC-42",
            duration_minutes=90,
            admin_rights=True,
        ),
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    access_request = AccessRequest.objects.get()
    assert body["id"] == access_request.pk
    assert body["status"] == "pending"
    assert body["status_label"] == "Pending approval"
    assert body["account"] == {
        "account_id": "111111111111",
        "name": "Acme Production",
        "forward_ports": [22, 3389],
        "cli_sessions": "record",
        "moderated": False,
    }
    assert body["requester"] == "alice"
    assert (body["reason"], body["ticket"], body["admin_rights"]) == ("Check the nginx config", "INC-42", True)
    assert (body["duration_minutes"], body["extended_minutes"]) == (90, 0)
    assert body["decided_by"] is None
    assert body["actions"] == ["cancel"]
    assert [(grant["instance_id"], grant["name"], grant["platform"], grant["status"]) for grant in body["grants"]] == [
        (world.web.instance_id, "web-1", "linux", "pending"),
        (world.windows.instance_id, "win-1", "windows", "pending"),
    ]
    assert body["grants"][0]["username"].startswith("rs-")


def test_create_defaults(world: World, client: APIClient) -> None:
    response = signed_in(client, world.requester).post("/api/requests/", create_payload(world), format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["duration_minutes"], body["admin_rights"], body["ticket"]) == (60, False, "")


DURATION_RANGE = "Access lasts at least 15 minutes and at most 12 hours, extensions included (15 to 720 minutes)."


@pytest.mark.parametrize(
    "overrides, field, fragment",
    [
        ({"reason": ""}, "reason", "Say why you need access."),
        ({"reason": "   "}, "reason", "Say why you need access."),
        ({"reason": "x" * 257}, "reason", "257 characters; at most 256"),
        # One message for any duration out of range, the serializer's bounds included (the CLI shows it).
        ({"duration_minutes": 10}, "duration_minutes", DURATION_RANGE),
        ({"duration_minutes": 0}, "duration_minutes", DURATION_RANGE),
        ({"duration_minutes": -5}, "duration_minutes", DURATION_RANGE),
        ({"duration_minutes": 13 * 60}, "duration_minutes", DURATION_RANGE),
        ({"duration_minutes": 20_000_000}, "duration_minutes", DURATION_RANGE),
        ({"ticket": "no spaces allowed"}, "ticket", "ticket reference"),
        ({"instances": []}, "instances", "Choose at least one instance."),
    ],
)
def test_create_per_field_errors(
    world: World, client: APIClient, overrides: dict[str, Any], field: str, fragment: str
) -> None:
    response = signed_in(client, world.requester).post(
        "/api/requests/", create_payload(world, **overrides), format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    assert fragment in " ".join(body[field])
    if fragment == DURATION_RANGE:
        assert body[field] == [DURATION_RANGE]
    assert not AccessRequest.objects.exists()


def test_create_reports_every_broken_rule_at_once(world: World, client: APIClient) -> None:
    response = signed_in(client, world.requester).post(
        "/api/requests/", create_payload(world, reason="", duration_minutes=5), format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"reason", "duration_minutes"}


def test_create_with_instance_of_another_account(world: World, client: APIClient) -> None:
    response = signed_in(client, world.requester).post(
        "/api/requests/",
        create_payload(world, instances=[world.web.instance_id, world.stage_web.instance_id]),
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "instances": [f"Not instances of Acme Production (111111111111): {world.stage_web.instance_id}."]
    }


def test_create_with_unknown_instance_ids_names_them(world: World, client: APIClient) -> None:
    response = signed_in(client, world.requester).post(
        "/api/requests/",
        create_payload(world, instances=["i-doesnotexist1", world.web.instance_id, "i-nope2"]),
        format="json",
    )
    assert response.status_code == 400
    message = response.json()["instances"][0]
    assert "i-doesnotexist1" in message
    assert "i-nope2" in message
    assert world.web.instance_id not in message


def test_create_with_old_agent_names_the_instance(world: World, client: APIClient) -> None:
    response = signed_in(client, world.requester).post(
        "/api/requests/", create_payload(world, instances=[world.legacy.instance_id]), format="json"
    )
    assert response.status_code == 400
    (message,) = response.json()["instances"]
    assert message.startswith(f"{world.legacy.instance_id} (legacy-1) runs SSM Agent 2.3.100.0")


def test_create_refused_to_observer_naming_the_role(world: World, client: APIClient) -> None:
    response = signed_in(client, world.observer).post("/api/requests/", create_payload(world), format="json")
    assert response.status_code == 400
    (message,) = response.json()["account"]
    assert "Observer" in message
    assert not AccessRequest.objects.exists()


def test_create_on_an_invisible_account(world: World, client: APIClient) -> None:
    response = signed_in(client, world.outsider).post("/api/requests/", create_payload(world), format="json")
    assert response.status_code == 400
    assert response.json() == {"account": ["You have no account 111111111111."]}


def test_create_input_shape_errors(world: World, client: APIClient) -> None:
    response = signed_in(client, world.requester).post(
        "/api/requests/", {"instances": "i-1", "duration_minutes": "soon"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"account", "instances", "reason", "duration_minutes"}


# --- Listing and reading --------------------------------------------------------------


def test_list_mine_scope_all_and_status(world: World, client: APIClient) -> None:
    alice_pending = make_request(world)
    alice_done = make_request(world, instances=[world.db])
    services.access_request_cancel(access_request=alice_done, actor=world.requester)
    erin_pending = make_request(world, requester=world.member)
    alice_staging = services.access_request_create(
        requester=world.requester, account=world.staging, instances=[world.stage_web], reason="Compare configs"
    )

    def ids(response: Any) -> list[int]:
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    signed_in(client, world.approver)
    assert ids(client.get("/api/requests/")) == []
    assert ids(client.get("/api/requests/", {"scope": "all"})) == [erin_pending.pk, alice_done.pk, alice_pending.pk]
    assert ids(client.get("/api/requests/", {"scope": "all", "status": "pending"})) == [
        erin_pending.pk,
        alice_pending.pk,
    ]
    signed_in(client, world.requester)
    assert ids(client.get("/api/requests/")) == [alice_staging.pk, alice_done.pk, alice_pending.pk]
    assert ids(client.get("/api/requests/", {"status": "cancelled"})) == [alice_done.pk]


def test_list_rejects_unknown_filters(world: World, client: APIClient) -> None:
    response = signed_in(client, world.requester).get("/api/requests/", {"status": "sleeping", "scope": "everyone"})
    assert response.status_code == 400
    assert set(response.json()) == {"status", "scope"}


def test_list_pages_with_a_cursor(world: World, client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("requests_app.apis.NewestFirstPagination.page_size", 2)
    # One person has one live request per instance, so each asks for a different one.
    created = [make_request(world, instances=[instance]).pk for instance in (world.web, world.db, world.windows)]
    first = signed_in(client, world.requester).get("/api/requests/").json()
    assert [row["id"] for row in first["results"]] == created[::-1][:2]
    second = client.get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == created[:1]
    assert second["next"] is None


def test_list_is_not_n_plus_one(world: World, client: APIClient, django_assert_max_num_queries: Any) -> None:
    for n in range(6):
        requester = make_user(f"requester{n}")
        make_membership(requester, world.prod, "admin")
        make_request(world, requester=requester, instances=[world.web, world.db, world.windows])
    signed_in(client, world.approver)
    # The page, its grants with their instances, which accounts the person approves, whether each
    # requester is still an Admin there (all of them in one query), and the accounts' approval policies.
    with django_assert_max_num_queries(5):
        response = client.get("/api/requests/", {"scope": "all"})
    assert len(response.json()["results"]) == 6
    assert all(row["actions"] == ["approve", "reject"] for row in response.json()["results"])
    # The queue's accounts are all the person's to approve: no need to ask which.
    with django_assert_max_num_queries(4):
        assert len(client.get("/api/approvals/").json()["results"]) == 6


def test_detail_for_requester_and_approver(world: World, client: APIClient) -> None:
    access_request = make_request(world)
    url = f"/api/requests/{access_request.pk}/"
    body = signed_in(client, world.requester).get(url).json()
    assert body["id"] == access_request.pk
    assert body["actions"] == ["cancel"]
    assert set(body) >= {
        "id", "status", "status_label", "account", "requester", "reason", "ticket", "admin_rights", "duration_minutes",
        "extended_minutes", "created_at", "decided_by", "decided_at", "activated_at", "expires_at", "ended_at",
        "end_reason", "grants", "actions",
    }  # fmt: skip
    assert set(body["grants"][0]) == {
        "instance_id", "name", "name_is_host_alias", "platform", "domain_controller", "username", "status",
        "attempts", "last_error", "ready_at", "removed_at",
    }  # fmt: skip
    assert signed_in(client, world.approver).get(url).json()["actions"] == ["approve", "reject"]
    auditor_view = signed_in(client, world.auditor).get(url)
    assert auditor_view.status_code == 200
    assert auditor_view.json()["actions"] == []


def test_detail_actions_when_active(world: World, client: APIClient) -> None:
    access_request = make_active(make_request(world))
    url = f"/api/requests/{access_request.pk}/"
    assert signed_in(client, world.requester).get(url).json()["actions"] == ["extend", "complete"]
    assert signed_in(client, world.approver).get(url).json()["actions"] == ["complete"]
    make_active(make_request(world, instances=[world.db]), extended_by=timedelta(hours=10, minutes=50))
    last = AccessRequest.objects.order_by("-pk").first()
    assert last is not None
    assert signed_in(client, world.requester).get(f"/api/requests/{last.pk}/").json()["actions"] == ["complete"]


def test_someone_elses_request_is_404(world: World, client: APIClient) -> None:
    access_request = make_request(world)
    for person in (world.outsider, world.member, world.observer):
        signed_in(client, person)
        assert client.get(f"/api/requests/{access_request.pk}/").status_code == 404
        for action in ("approve", "reject", "cancel", "complete"):
            assert client.post(f"/api/requests/{access_request.pk}/{action}/").status_code == 404
        assert client.post(f"/api/requests/{access_request.pk}/extend/", {"minutes": 30}).status_code == 404
    access_request.refresh_from_db()
    assert access_request.status == RequestStatus.PENDING
    assert signed_in(client, world.requester).get("/api/requests/999999/").status_code == 404


# --- Decisions and the rest of the lifecycle ------------------------------------------


def test_approve(world: World, client: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    access_request = make_request(world)
    with django_capture_on_commit_callbacks() as callbacks:
        response = signed_in(client, world.approver).post(
            f"/api/requests/{access_request.pk}/approve/", {"note": "ok for today"}, format="json"
        )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["decided_by"], body["decision_note"]) == ("approved", "carol", "ok for today")
    assert body["decided_at"] is not None
    assert len(callbacks) == 1  # provisioning is queued once the approval commits


def test_approve_twice_is_idempotent(world: World, client: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    access_request = make_request(world)
    signed_in(client, world.approver)
    with django_capture_on_commit_callbacks() as callbacks:
        first = client.post(f"/api/requests/{access_request.pk}/approve/")
        second = client.post(f"/api/requests/{access_request.pk}/approve/")
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["decided_at"] == second.json()["decided_at"]
    assert len(callbacks) == 1


def test_self_approval_is_refused(world: World, client: APIClient) -> None:
    access_request = make_request(world, requester=world.approver)
    response = signed_in(client, world.approver).post(f"/api/requests/{access_request.pk}/approve/")
    assert response.status_code == 403
    assert response.json() == {"detail": "You cannot approve your own request."}
    assert signed_in(client, world.approver).get("/api/approvals/").json()["results"] == []


def test_approve_by_someone_who_only_sees_it(world: World, client: APIClient) -> None:
    access_request = make_request(world)
    response = signed_in(client, world.auditor).post(f"/api/requests/{access_request.pk}/approve/")
    assert response.status_code == 403
    assert "do not approve requests for Acme Production" in response.json()["detail"]


def test_reject(world: World, client: APIClient) -> None:
    access_request = make_request(world)
    response = signed_in(client, world.approver).post(
        f"/api/requests/{access_request.pk}/reject/", {"note": "use staging"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["decision_note"], body["actions"]) == ("rejected", "use staging", [])
    assert body["grants"][0]["status"] == "removed"


def test_wrong_state_is_409(world: World, client: APIClient) -> None:
    access_request = make_request(world)
    signed_in(client, world.approver).post(f"/api/requests/{access_request.pk}/reject/", {"note": "no"}, format="json")
    response = client.post(f"/api/requests/{access_request.pk}/approve/")
    assert response.status_code == 409
    assert response.json() == {"detail": f"Request #{access_request.pk} is rejected; it cannot be approved."}
    response = signed_in(client, world.requester).post(f"/api/requests/{access_request.pk}/cancel/")
    assert response.status_code == 409
    assert "cannot be cancelled" in response.json()["detail"]


def test_cancel(world: World, client: APIClient) -> None:
    access_request = make_request(world)
    response = signed_in(client, world.requester).post(f"/api/requests/{access_request.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert client.post(f"/api/requests/{access_request.pk}/cancel/").status_code == 200  # again: nothing to do


def test_cancel_by_approver_is_refused(world: World, client: APIClient) -> None:
    access_request = make_request(world)
    response = signed_in(client, world.approver).post(f"/api/requests/{access_request.pk}/cancel/")
    assert response.status_code == 403
    assert response.json() == {"detail": "Only the requester can cancel a request."}


def test_cancel_after_provisioning_started_is_409(world: World, client: APIClient) -> None:
    access_request = make_active(make_request(world))
    response = signed_in(client, world.requester).post(f"/api/requests/{access_request.pk}/cancel/")
    assert response.status_code == 409
    assert "complete the request instead" in response.json()["detail"]


def test_complete(world: World, client: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    access_request = make_active(make_request(world, instances=[world.web, world.db]))
    with django_capture_on_commit_callbacks() as callbacks:
        response = signed_in(client, world.approver).post(f"/api/requests/{access_request.pk}/complete/")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["end_reason"], body["actions"]) == ("completing", "completed", [])
    assert {grant["status"] for grant in body["grants"]} == {"removing"}
    # Removal of the users is queued on commit (beside closing any open terminal), never before.
    assert "enqueue" in [callback.__name__ for callback in callbacks]


def test_complete_pending_is_409(world: World, client: APIClient) -> None:
    access_request = make_request(world)
    response = signed_in(client, world.requester).post(f"/api/requests/{access_request.pk}/complete/")
    assert response.status_code == 409
    assert "pending approval; it cannot be completed" in response.json()["detail"]


def test_extend(world: World, client: APIClient) -> None:
    access_request = make_active(make_request(world))
    expires_at = access_request.expires_at
    assert expires_at is not None
    response = signed_in(client, world.requester).post(
        f"/api/requests/{access_request.pk}/extend/", {"minutes": 30}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["duration_minutes"], response.json()["extended_minutes"]) == (60, 30)
    access_request.refresh_from_db()
    assert access_request.expires_at == expires_at + timedelta(minutes=30)


def test_extend_beyond_twelve_hours_is_refused(world: World, client: APIClient) -> None:
    access_request = make_active(make_request(world, duration=timedelta(hours=11)))
    response = signed_in(client, world.requester).post(
        f"/api/requests/{access_request.pk}/extend/", {"minutes": 120}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "minutes": ["Access lasts at most 12 hours in total; this request has 11 h, so at most 1 h more."]
    }
    access_request.refresh_from_db()
    assert access_request.extended_by == timedelta(0)


def test_extend_past_the_policy_is_refused_with_its_reason(world: World, client: APIClient) -> None:
    ApprovalPolicy.objects.create(account=world.prod, deny_over_duration=timedelta(hours=2))
    access_request = make_active(make_request(world))
    response = signed_in(client, world.requester).post(
        f"/api/requests/{access_request.pk}/extend/", {"minutes": 120}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "minutes": [
            "Acme Production allows at most 2 h per request, extensions included; "
            "this request has 1 h, so it can be extended by at most 1 h."
        ]
    }
    access_request.refresh_from_db()
    assert access_request.extended_by == timedelta(0)


def test_actions_list_extend_only_while_an_extension_would_be_accepted(
    world: World, client: APIClient, django_assert_max_num_queries: Any
) -> None:
    """``actions`` is what the extend service accepts: no ``extend`` at the policy's total or the 12 h."""
    ApprovalPolicy.objects.create(account=world.prod, deny_over_duration=timedelta(hours=2))
    room = make_active(make_request(world, duration=timedelta(minutes=105)))  # 15 min left: one step
    at_policy = make_active(make_request(world, duration=timedelta(hours=1)), extended_by=timedelta(hours=1))
    signed_in(client, world.requester)

    def actions(access_request: AccessRequest) -> list[str]:
        return client.get(f"/api/requests/{access_request.pk}/").json()["actions"]

    assert actions(room) == ["extend", "complete"]
    assert actions(at_policy) == ["complete"]
    # The page, its grants, which accounts the person approves, their role and the policies, once each.
    with django_assert_max_num_queries(5):
        listed = {row["id"]: row["actions"] for row in client.get("/api/requests/").json()["results"]}
    assert listed == {room.pk: ["extend", "complete"], at_policy.pk: ["complete"]}
    # As the service says.
    response = client.post(f"/api/requests/{at_policy.pk}/extend/", {"minutes": 15}, format="json")
    assert response.status_code == 400
    assert "this request has 2 h, so it can no longer be extended." in response.json()["minutes"][0]
    assert client.post(f"/api/requests/{room.pk}/extend/", {"minutes": 15}, format="json").status_code == 200
    assert actions(room) == ["complete"]

    ApprovalPolicy.objects.filter(account=world.prod).delete()
    at_twelve = make_active(make_request(world, duration=timedelta(hours=11)), extended_by=timedelta(hours=1))
    assert actions(at_twelve) == ["complete"]


@pytest.mark.parametrize(
    "payload, message",
    [({"minutes": 5}, "Extend by at least 15 minutes."), ({}, "This field is required."),
     ({"minutes": -1}, "Extend by at least 15 minutes.")],
)  # fmt: skip
def test_extend_input_errors(world: World, client: APIClient, payload: dict[str, Any], message: str) -> None:
    access_request = make_active(make_request(world))
    response = signed_in(client, world.requester).post(
        f"/api/requests/{access_request.pk}/extend/", payload, format="json"
    )
    assert response.status_code == 400
    assert message in response.json()["minutes"][0]


def test_extend_pending_is_409_and_others_403(world: World, client: APIClient) -> None:
    access_request = make_request(world)
    response = signed_in(client, world.requester).post(
        f"/api/requests/{access_request.pk}/extend/", {"minutes": 30}, format="json"
    )
    assert response.status_code == 409
    assert "cannot be extended" in response.json()["detail"]
    response = signed_in(client, world.approver).post(
        f"/api/requests/{access_request.pk}/extend/", {"minutes": 30}, format="json"
    )
    assert response.status_code == 403
    assert response.json() == {"detail": "Only the requester can extend a request."}


# --- Approval queue -------------------------------------------------------------------


def test_approval_queue(world: World, client: APIClient) -> None:
    first = make_request(world)
    second = make_request(world, requester=world.member)
    services.access_request_cancel(access_request=make_request(world, instances=[world.db]), actor=world.requester)
    response = signed_in(client, world.approver).get("/api/approvals/")
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [first.pk, second.pk]
    assert signed_in(client, world.requester).get("/api/approvals/").json()["results"] == []
    assert signed_in(client, world.outsider).get("/api/approvals/").json()["results"] == []
