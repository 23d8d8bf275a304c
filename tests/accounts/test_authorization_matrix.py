"""The authorization matrix: every persona, every endpoint, every object.

The expectations below are written from the product's rules, not read from
``accounts.permissions``; the portal is then asked, cell by cell, through its real views,
API and services. A change is judged by what it did (the request's state moved, a secret
came back, an id appeared in a list), so a view that answers 200 but does nothing, or a
403 page that still leaks, is caught either way.

The rules:
- A request is seen by its requester, the approvers of its account, auditors and site admins.
- Approve/reject: an approver of the account (or a site admin), never the requester.
- Extend: only the requester. Cancel: the requester, or a site admin. Complete: the
  requester, the account's approvers, site admins.
- Certificates, passwords, Session Manager sessions, scoped AWS credentials and the
  terminal: only the requester.
- Terminal recordings: the person who ran the terminal, the account's approvers, auditors
  and site admins.
- The Logbook: auditors and site admins only.
- Accounts: members see theirs, reviewers see all; only Admins list an account's instances
  to request them; approvers (of that account) may sync its inventory.

Every URL the portal routes is listed here or exempted with a reason, so a new endpoint
without expectations fails ``test_every_route_is_in_the_matrix``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounts.models import AwsAccount, User
from audit.services import logbook_append
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.passwords import seal_password
from terminal import services as terminal_services
from terminal.models import TerminalSession
from terminal.recording import AsciicastWriter
from tests.factories import make_account, make_instance, make_membership, make_user

pytestmark = pytest.mark.django_db

PASSWORD = "Matrix-Secret-Password-0001"
ANON = "anonymous"


@pytest.fixture(autouse=True)
def _fast_and_offline(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Nothing here may reach AWS: a session start that gets past authorization fails fast.
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"


# --- the scene ------------------------------------------------------------------------


@dataclass
class Scene:
    people: dict[str, User | None]
    accounts: dict[str, AwsAccount]
    requests: dict[str, AccessRequest]
    approvers: dict[str, set[str]]  # account key -> people who approve it
    members: dict[str, set[str]]  # account key -> people with any membership
    logbook_accounts: dict[int, str] = field(default_factory=dict)  # entry id -> account key

    def user(self, name: str) -> User | None:
        return self.people[name]

    def account_of(self, request_key: str) -> str:
        return "prod" if request_key.endswith("prod") else "staging"

    def requester_of(self, request_key: str) -> str:
        return self.requests[request_key].requester.username


def _request(requester: User, account: AwsAccount, instances: list[Instance]) -> AccessRequest:
    return services.access_request_create(
        requester=requester, account=account, instances=instances, reason="Matrix: read the logs"
    )


def _activate(access_request: AccessRequest) -> AccessRequest:
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    for grant in Grant.objects.filter(request=access_request).select_related("instance"):
        grant.status = GrantStatus.READY
        grant.ready_at = now
        grant.username = grant.username or f"rs-matrix{grant.pk}"
        if grant.instance.platform == Instance.Platform.WINDOWS:
            grant.password_sealed = seal_password(grant, PASSWORD)
        grant.save()
    access_request.refresh_from_db()
    return access_request


@pytest.fixture
def scene(db: None) -> Scene:
    prod = make_account()
    staging = make_account("222222222222", "Acme Staging")
    people: dict[str, User | None] = {ANON: None}
    for name in ("alice", "erin", "oscar", "mallory", "carol", "frank", "gina"):
        people[name] = make_user(name)
    people["dave"] = make_user("dave", is_auditor=True)
    people["root"] = make_user("root", is_superuser=True, is_staff=True)

    def person(name: str) -> User:
        user = people[name]
        assert user is not None
        return user

    make_membership(person("alice"), prod, "admin")
    make_membership(person("alice"), staging, "admin")  # Admin there too, but not an approver
    make_membership(person("erin"), prod, "admin")
    make_membership(person("oscar"), prod, "observer")
    make_membership(person("carol"), prod, "admin", can_approve=True)
    make_membership(person("frank"), staging, "admin")
    make_membership(person("gina"), staging, "admin", can_approve=True)

    web, win = make_instance(prod, "web-1"), make_instance(prod, "win-1", platform=Instance.Platform.WINDOWS)
    db_host = make_instance(prod, "db-1")
    stage_web, stage_db = make_instance(staging, "stage-web-1"), make_instance(staging, "stage-db-1")
    stage_win = make_instance(staging, "stage-win-1", platform=Instance.Platform.WINDOWS)

    requests = {
        "alice-pending-prod": _request(person("alice"), prod, [db_host]),
        "alice-active-prod": _activate(_request(person("alice"), prod, [web, win])),
        "erin-pending-prod": _request(person("erin"), prod, [db_host]),
        "erin-active-prod": _activate(_request(person("erin"), prod, [web, win])),
        "frank-pending-staging": _request(person("frank"), staging, [stage_db]),
        "frank-active-staging": _activate(_request(person("frank"), staging, [stage_web, stage_win])),
    }
    scene = Scene(
        people=people,
        accounts={"prod": prod, "staging": staging},
        requests=requests,
        approvers={"prod": {"carol", "root"}, "staging": {"gina", "root"}},
        members={"prod": {"alice", "erin", "oscar", "carol"}, "staging": {"alice", "frank", "gina"}},
    )
    for key, account in scene.accounts.items():
        entry = logbook_append(action="matrix.marker", actor=None, account=account, detail={"marker": f"marker-{key}"})
        scene.logbook_accounts[entry.pk] = key
    return scene


# --- the oracle -----------------------------------------------------------------------

PEOPLE = [ANON, "alice", "erin", "oscar", "mallory", "carol", "frank", "gina", "dave", "root"]
REVIEWERS = {"dave", "root"}


def sees_request(scene: Scene, person: str, request_key: str) -> bool:
    account = scene.account_of(request_key)
    return person in {scene.requester_of(request_key), "dave", "root"} | scene.approvers[account]


def decides(scene: Scene, person: str, request_key: str) -> bool:
    return person in scene.approvers[scene.account_of(request_key)] and person != scene.requester_of(request_key)


def is_requester(scene: Scene, person: str, request_key: str) -> bool:
    return person == scene.requester_of(request_key)


def cancels(scene: Scene, person: str, request_key: str) -> bool:
    return is_requester(scene, person, request_key) or person == "root"


def sees_recording(scene: Scene, person: str, request_key: str) -> bool:
    """Recordings here are of the requester's own terminal."""
    return person in {scene.requester_of(request_key)} | REVIEWERS | scene.approvers[scene.account_of(request_key)]


def completes(scene: Scene, person: str, request_key: str) -> bool:
    return is_requester(scene, person, request_key) or person in scene.approvers[scene.account_of(request_key)]


# --- asking the portal ----------------------------------------------------------------


def client_for(scene: Scene, person: str) -> Client:
    client = Client()
    user = scene.user(person)
    if user is not None:
        client.force_login(user)
    return client


def refused(response: Any) -> bool:
    """401/403/404, or a page's redirect to sign in."""
    if response.status_code in (401, 403, 404):
        return True
    return response.status_code == 302 and "/accounts/login/" in response.get("Location", "")


class _Rollback(Exception):
    pass


def attempt(action: Callable[[], Any], observe: Callable[[], Any]) -> tuple[Any, Any]:
    """Run ``action`` and ``observe`` its effect, then undo everything: cells stay independent."""
    outcome: list[Any] = []
    try:
        with transaction.atomic():
            response = action()
            outcome.extend([response, observe()])
            raise _Rollback
    except _Rollback:
        pass
    return outcome[0], outcome[1]


def status_of(scene: Scene, request_key: str) -> tuple[str, Any]:
    access_request = AccessRequest.objects.get(pk=scene.requests[request_key].pk)
    return access_request.status, access_request.expires_at


Cell = tuple[str, str]  # (person, object)


def mismatches(results: dict[Cell, tuple[bool, bool, int]]) -> list[str]:
    """Cells where what happened differs from what the rules say, ready to print."""
    return [
        f"{person:>9} on {obj:<22} expected {'allowed' if expected else 'refused'}, "
        f"got {'allowed' if happened else 'refused'} (HTTP {code})"
        for (person, obj), (expected, happened, code) in sorted(results.items())
        if expected != happened
    ]


def check(results: dict[Cell, tuple[bool, bool, int]]) -> None:
    assert any(expected for expected, _, _ in results.values()), "the matrix must hold cells that are allowed"
    assert any(not expected for expected, _, _ in results.values()), "the matrix must hold cells that are refused"
    problems = mismatches(results)
    server_errors = [f"{cell}: HTTP {code}" for cell, (_, _, code) in results.items() if code == 500]
    assert not server_errors, "server errors:\n" + "\n".join(server_errors)
    assert not problems, "authorization matrix broken:\n" + "\n".join(problems)


# --- mutations: judged by the request's state ------------------------------------------

MUTATIONS: dict[str, tuple[str, Callable[[Scene, str, str], bool], dict[str, Any]]] = {
    # action: (the state it needs, who may, the form/API body)
    "approve": ("pending", decides, {"note": "ok"}),
    "reject": ("pending", decides, {"note": "no"}),
    "cancel": ("pending", cancels, {}),
    "extend": ("active", is_requester, {"minutes": 60}),
    "complete": ("active", completes, {}),
}


def _targets(scene: Scene, state: str) -> list[str]:
    return [key for key in scene.requests if f"-{state}-" in key]


@pytest.mark.parametrize("surface", ["page", "api"])
@pytest.mark.parametrize("action", list(MUTATIONS))
def test_request_mutations(scene: Scene, action: str, surface: str) -> None:
    state, may, body = MUTATIONS[action]
    results: dict[Cell, tuple[bool, bool, int]] = {}
    for person in PEOPLE:
        for key in _targets(scene, state):
            pk = scene.requests[key].pk
            client = client_for(scene, person)
            url = f"/requests/{pk}/{action}/" if surface == "page" else f"/api/requests/{pk}/{action}/"
            before = status_of(scene, key)
            if surface == "page":
                form = {"minutes": "60", "note": body.get("note", "")}
                response, after = attempt(lambda: client.post(url, form), lambda: status_of(scene, key))  # noqa: B023
            else:
                response, after = attempt(
                    lambda: client.post(url, body, content_type="application/json"),  # noqa: B023
                    lambda: status_of(scene, key),  # noqa: B023
                )
            results[(person, key)] = (may(scene, person, key), after != before, response.status_code)
    check(results)


def test_the_requester_never_approves_their_own_request_even_as_approver(scene: Scene) -> None:
    carol = scene.user("carol")
    assert carol is not None
    own = _request(carol, scene.accounts["prod"], [Instance.objects.get(name="db-1")])
    client = client_for(scene, "carol")
    response = client.post(f"/api/requests/{own.pk}/approve/", {"note": ""}, content_type="application/json")
    assert response.status_code == 403
    own.refresh_from_db()
    assert own.status == RequestStatus.PENDING


# --- reads of one request --------------------------------------------------------------

READS: dict[str, Callable[[int], str]] = {
    "page": lambda pk: f"/requests/{pk}/",
    "api": lambda pk: f"/api/requests/{pk}/",
}


@pytest.mark.parametrize("surface", list(READS))
def test_request_reads(scene: Scene, surface: str) -> None:
    results: dict[Cell, tuple[bool, bool, int]] = {}
    for person in PEOPLE:
        for key, access_request in scene.requests.items():
            response = client_for(scene, person).get(READS[surface](access_request.pk))
            shown = response.status_code == 200 and access_request.reason in response.content.decode()
            results[(person, key)] = (sees_request(scene, person, key), shown, response.status_code)
            if not shown:
                assert access_request.reason not in response.content.decode()
    check(results)


@pytest.mark.parametrize("scope", ["all", "mine"])
def test_request_list_shows_only_what_each_person_may_see(scene: Scene, scope: str) -> None:
    for person in PEOPLE:
        response = client_for(scene, person).get(f"/api/requests/?scope={scope}")
        if person == ANON:
            assert refused(response)
            continue
        assert response.status_code == 200, (person, response.status_code)
        listed = {item["id"] for item in response.json()["results"]}
        allowed = {
            access_request.pk
            for key, access_request in scene.requests.items()
            if (is_requester(scene, person, key) if scope == "mine" else sees_request(scene, person, key))
        }
        assert listed == allowed, person


def test_approval_queue_holds_only_decidable_requests(scene: Scene) -> None:
    for person in PEOPLE:
        api = client_for(scene, person).get("/api/approvals/")
        page = client_for(scene, person).get("/requests/approvals/")
        if person == ANON:
            assert refused(api) and refused(page)
            continue
        listed = {item["id"] for item in api.json()["results"]}
        allowed = {r.pk for key, r in scene.requests.items() if "-pending-" in key and decides(scene, person, key)}
        assert listed == allowed, person
        approver_anywhere = any(person in names for names in scene.approvers.values())
        assert (page.status_code == 200) == approver_anywhere, (person, page.status_code)
        if page.status_code == 200:
            shown = {r.pk for r in scene.requests.values() if f"/requests/{r.pk}/" in page.content.decode()}
            assert shown == allowed, person


def test_approvals_count_is_the_queue_length(scene: Scene) -> None:
    for person in PEOPLE:
        response = client_for(scene, person).get("/requests/approvals/count/")
        if person == ANON:
            assert refused(response)
            continue
        assert response.status_code == 200, (person, response.status_code)
        allowed = [r for key, r in scene.requests.items() if "-pending-" in key and decides(scene, person, key)]
        assert f'data-count="{len(allowed)}"' in response.content.decode(), person


# --- secrets and connections of one grant -----------------------------------------------


def _grant(scene: Scene, key: str, platform: str) -> Grant:
    return Grant.objects.select_related("instance").get(request=scene.requests[key], instance__platform=platform)


def _active_keys(scene: Scene) -> list[str]:
    return _targets(scene, "active")


def test_windows_passwords(scene: Scene) -> None:
    results: dict[Cell, tuple[bool, bool, int]] = {}
    for surface in ("page", "api"):
        for person in PEOPLE:
            for key in _active_keys(scene):
                grant = _grant(scene, key, Instance.Platform.WINDOWS)
                client = client_for(scene, person)
                if surface == "page":
                    url = f"/requests/{grant.request_id}/grants/{grant.pk}/password/"
                else:
                    url = f"/api/requests/{grant.request_id}/grants/{grant.instance.instance_id}/password/"
                response, _ = attempt(lambda: client.post(url), lambda: None)  # noqa: B023
                revealed = PASSWORD in response.content.decode()
                results[(f"{person}/{surface}", key)] = (
                    is_requester(scene, person, key),
                    revealed,
                    response.status_code,
                )
    check(results)


def test_certificates(scene: Scene) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    public_key = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    results: dict[Cell, tuple[bool, bool, int]] = {}
    for person in PEOPLE:
        for key in _active_keys(scene):
            grant = _grant(scene, key, Instance.Platform.LINUX)
            url = f"/api/requests/{grant.request_id}/grants/{grant.instance.instance_id}/certificate/"
            client = client_for(scene, person)
            response, _ = attempt(
                lambda: client.post(url, {"public_key": public_key}, content_type="application/json"),  # noqa: B023
                lambda: None,
            )
            issued = response.status_code == 200 and "-cert-v01@openssh.com" in response.content.decode()
            results[(person, key)] = (is_requester(scene, person, key), issued, response.status_code)
    check(results)


def test_sessions_credentials_and_terminal_pages(scene: Scene) -> None:
    """Past authorization a session or credentials fail here (no AWS): 502, never 403/404."""
    results: dict[Cell, tuple[bool, bool, int]] = {}
    for person in PEOPLE:
        for key in _active_keys(scene):
            grant = _grant(scene, key, Instance.Platform.LINUX)
            client = client_for(scene, person)
            session_url = f"/api/requests/{grant.request_id}/grants/{grant.instance.instance_id}/session/"
            response, _ = attempt(lambda: client.post(session_url), lambda: None)  # noqa: B023
            results[(f"{person}/session", key)] = (
                is_requester(scene, person, key),
                not refused(response),
                response.status_code,
            )
            credentials_url = f"/api/requests/{grant.request_id}/credentials/"
            response, _ = attempt(lambda: client.post(credentials_url), lambda: None)  # noqa: B023
            results[(f"{person}/credentials", key)] = (
                is_requester(scene, person, key),
                not refused(response),
                response.status_code,
            )
            page, _ = attempt(lambda: client.get(f"/terminal/{grant.pk}/"), lambda: None)  # noqa: B023
            ticketed = page.status_code == 200 and b'data-ticket="' in page.content
            results[(f"{person}/terminal", key)] = (is_requester(scene, person, key), ticketed, page.status_code)
    check(results)


# --- the Logbook -----------------------------------------------------------------------


def test_logbook(scene: Scene) -> None:
    results: dict[Cell, tuple[bool, bool, int]] = {}
    markers = {f"marker-{key}" for key in scene.accounts}
    for person in PEOPLE:
        client = client_for(scene, person)
        for name, url in {
            "review": "/logbook/",
            "api": "/api/logbook/",
            "csv": "/logbook/export.csv",
            "jsonl": "/logbook/export.jsonl",
        }.items():
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            shows = {marker for marker in markers if marker.encode() in body}
            allowed = person in REVIEWERS
            results[(person, name)] = (allowed, bool(shows), response.status_code)
            if allowed:
                assert shows == markers, (person, name)
    check(results)


# --- terminal recordings ---------------------------------------------------------------


def _record(scene: Scene, key: str) -> TerminalSession:
    """A sealed recording of the requester's terminal on the request's Linux instance."""
    grant = _grant(scene, key, Instance.Platform.LINUX)
    requester = scene.requests[key].requester
    relative = terminal_services.recording_relative_path(grant=grant)
    writer = AsciicastWriter(terminal_services.recording_absolute_path(relative), cols=80, rows=24, title=key)
    session = terminal_services.terminal_session_start(
        user=requester, grant=grant, ssm_session_id=f"s-{key}", recording_path=relative
    )
    writer.output(f"$ cat secret\r\nmatrixword {key}\r\n".encode())
    digest = writer.close()
    return terminal_services.terminal_session_end(
        session=session,
        reason="The shell ended.",
        bytes_in=writer.bytes_in,
        bytes_out=writer.bytes_out,
        recording_sha256=digest,
    )


def test_recordings(scene: Scene, settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    sessions = {key: _record(scene, key) for key in _active_keys(scene)}
    results: dict[Cell, tuple[bool, bool, int]] = {}
    for person in PEOPLE:
        client = client_for(scene, person)
        for key, session in sessions.items():
            may = sees_recording(scene, person, key)
            page = client.get(f"/terminal/recordings/{session.pk}/")
            shown = page.status_code == 200 and session.recording_sha256 in page.content.decode()
            results[(f"{person}/page", key)] = (may, shown, page.status_code)
            cast = client.get(f"/terminal/recordings/{session.pk}/cast")
            body = b"".join(cast.streaming_content) if cast.streaming else cast.content
            results[(f"{person}/cast", key)] = (may, f"matrixword {key}".encode() in body, cast.status_code)
        search = client.get("/terminal/recordings/", {"q": "matrixword"})
        listing = search.content.decode() if search.status_code == 200 else ""
        found = {key for key, session in sessions.items() if f"/terminal/recordings/{session.pk}/" in listing}
        if person == ANON:
            assert refused(search)
        assert found == {key for key in sessions if sees_recording(scene, person, key)}, person
    check(results)


# --- accounts and inventory --------------------------------------------------------------


def test_accounts_and_instances(scene: Scene) -> None:
    results: dict[Cell, tuple[bool, bool, int]] = {}
    for person in PEOPLE:
        client = client_for(scene, person)
        listed = client.get("/api/accounts/")
        if person == ANON:
            assert refused(listed)
        else:
            names = {item["account_id"] for item in listed.json()}
            expected = {
                scene.accounts[key].account_id
                for key in scene.accounts
                if person in scene.members[key] or person in REVIEWERS
            }
            assert names == expected, person
        for key, account in scene.accounts.items():
            response = client.get(f"/api/accounts/{account.account_id}/instances/")
            # Instances are listed to those who may request there: its Admins (not Observers).
            may = person in scene.members[key] and person != "oscar"
            results[(f"{person}/instances", key)] = (may, response.status_code == 200, response.status_code)
            sync = client.post(f"/api/accounts/{account.account_id}/sync/")
            results[(f"{person}/sync-api", key)] = (
                person in scene.approvers[key],
                not refused(sync),
                sync.status_code,
            )
            page_sync = client.post(f"/requests/inventory/{account.pk}/sync/")
            results[(f"{person}/sync-page", key)] = (
                person in scene.approvers[key],
                not refused(page_sync),
                page_sync.status_code,
            )
        inventory = client.get("/requests/inventory/")
        approver_anywhere = any(person in names for names in scene.approvers.values())
        results[(person, "inventory-page")] = (approver_anywhere, inventory.status_code == 200, inventory.status_code)
    check(results)


# --- every route is in the matrix --------------------------------------------------------

COVERED = {
    # requests_app pages
    "requests:list": "every signed-in person; lists their own requests (test_request_list...)",
    "requests:create": "requestable accounts only (tests/requests_app/test_views.py)",
    "requests:instance_picker": "requestable accounts only (tests/requests_app/test_views.py)",
    "requests:approvals": "test_approval_queue_holds_only_decidable_requests",
    "requests:approvals_count": "test_approvals_count_is_the_queue_length",
    "requests:inventory": "test_accounts_and_instances",
    "requests:inventory_sync": "test_accounts_and_instances",
    "requests:detail": "test_request_reads",
    "requests:grant_password": "test_windows_passwords",
    "requests:action": "test_request_mutations",
    # API
    "api-account-list": "test_accounts_and_instances",
    "api-instance-list": "test_accounts_and_instances",
    "api-inventory-sync": "test_accounts_and_instances",
    "api-request-list": "test_request_list_shows_only_what_each_person_may_see",
    "api-request-detail": "test_request_reads",
    "api-request-approve": "test_request_mutations",
    "api-request-reject": "test_request_mutations",
    "api-request-cancel": "test_request_mutations",
    "api-request-extend": "test_request_mutations",
    "api-request-complete": "test_request_mutations",
    "api-grant-certificate": "test_certificates",
    "api-grant-password": "test_windows_passwords",
    "api-grant-session": "test_sessions_credentials_and_terminal_pages",
    "api-approval-queue": "test_approval_queue_holds_only_decidable_requests",
    "api-logbook-list": "test_logbook",
    # Logbook pages
    "audit:review": "test_logbook",
    "audit:export-csv": "test_logbook",
    "audit:export-jsonl": "test_logbook",
    # terminal
    "terminal:page": "test_sessions_credentials_and_terminal_pages",
    "terminal:recordings": "test_recordings",
    "terminal:recording": "test_recordings",
    "terminal:recording-cast": "test_recordings",
    "terminal:live": "tests/terminal/test_live_permissions.py (the persona matrix)",
    "terminal:watch": "tests/terminal/test_live_permissions.py::test_pages_refuse_everyone_else",
    "terminal:end": "tests/terminal/test_live_permissions.py::test_pages_refuse_everyone_else",
    "api-request-credentials": "test_sessions_credentials_and_terminal_pages",
}
EXEMPT = {
    "sshca:keys": "public keys only, to every signed-in person",
    "api-ca-key-list": "public keys only",
    "api-ca-keys-text": "public keys only, as text for hosts",
    "cli-device": "confirms a device code for whoever is signed in (tests/cli)",
    "api-cli-device": "starts a device sign-in: no person yet",
    "api-cli-token": "exchanges a confirmed device code (tests/cli)",
    "api-cli-token-revoke": "revokes the caller's own token",
    "cli-sign-ins": "the signed-in person's own CLI tokens only (tests/accounts/test_cli_tokens.py)",
    "cli-sign-in-revoke": "one of the person's own tokens; another's is a 404 (tests/accounts/test_cli_tokens.py)",
    "cli-sign-ins-revoke-all": "the person's own tokens only (tests/accounts/test_cli_tokens.py)",
    "api-cli-releases": "the published CLI wheels and their SHA-256: public",
    "cli-release-download": "a published CLI wheel: public",
    "cli-install": "how to install the CLI, for every signed-in person (tests/accounts/test_cli_install.py)",
    "cli-install-sh": "the CLI's install script, the same for everyone: public (tests/accounts/test_cli_install.py)",
    "cli-install-ps1": "the CLI's Windows install script, the same for everyone: public (test_cli_install.py)",
    "api-schema": "the OpenAPI document",
    "api-docs": "the API's documentation page",
    "favicon": "a redirect to the static icon, for everyone",
    "admin-sign-in": "a redirect to the portal's sign-in, for everyone (tests/accounts/test_mfa.py)",
    "admin-password-change": "a redirect to the portal's password change (tests/accounts/test_mfa.py)",
    "admin-sign-out": "the portal's own sign-out, POST only, with the CSRF token (test_admin_sign_out.py)",
    "healthz": "load balancers' liveness probe: says only that the process answers",
    "readyz": "load balancers' readiness probe: ok or failed per dependency, no hosts or secrets",
    "metrics": "Prometheus: a bearer token (PASSPORT_METRICS_TOKEN), not a person (test_metrics.py)",
}
# Whole trees that are not the portal's own authorization: Django admin (site admins, staff
# only), allauth's sign-in pages, the root redirect.
EXEMPT_PREFIXES = ("admin:", "account_", "socialaccount_", "mfa_", "saml_", "")


def _route_names(patterns: list[URLPattern | URLResolver], namespace: str = "") -> Iterator[str]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _route_names(pattern.url_patterns, inner)
        elif pattern.name:
            yield f"{namespace}{pattern.name}"


def test_every_route_is_in_the_matrix() -> None:
    names = set(_route_names(get_resolver().url_patterns))
    unknown = sorted(
        name
        for name in names
        if name not in COVERED
        and name not in EXEMPT
        and not any(name.startswith(prefix) for prefix in EXEMPT_PREFIXES if prefix)
    )
    assert not unknown, f"routes without authorization expectations: {unknown}"
    assert set(COVERED) <= names, f"stale entries: {sorted(set(COVERED) - names)}"
