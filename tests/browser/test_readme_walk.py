"""The README's walk-through, followed step by step in headless Chromium as a newcomer would.

The same data the README describes: devcloud's demo seed (the two accounts, web-1, db-1,
win-ad-1, the federated roles) and `manage.py load_demo` (alice, bob, dave, admin with the
demo password), the demo IdPs of `devcloud/idp/` for carol and sam, a real Celery worker,
and daphne (the browser terminal needs ASGI). The portal checks IAM as the demo does.

alice asks (New request, the picker, a duration, a reason), bob approves at Approvals, the
request goes Ready, alice runs a command in the browser terminal, extends, completes (the
confirm page says what it ends; the terminal says why it closed); dave reads the Logbook,
plays the recording back and finds the command's output by search; carol (Customer SSO)
and sam (Support SSO, who must name a ticket) each ask and get access, approved by bob; sam's
Windows password is revealed on the page.

Every page is photographed at 1280x800 and at 390x844 into ``$PASSPORT_WALK_SCREENSHOTS``
(default ``build/walk/``), as ``NN-<step>-<width>.png``.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from accounts.models import AwsAccount
from devcloud.idp import DemoServer
from requests_app.management.commands.load_demo import DEMO_PASSWORD
from requests_app.models import AccessRequest, Instance
from terminal.models import TerminalSession
from tests.stack import ROOT, Cloud, WorkerProcess, daphne_running, free_port, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.timeout(900),
]

SIZES = ((1280, 800), (390, 844))
READY_TIMEOUT = 180_000  # ms: approval to Ready through the worker and devcloud's Run Command (a busy CI)


@pytest.fixture(autouse=True)
def patient_expect() -> Iterator[None]:
    """Assertions wait up to 15 s (Playwright's default is 5): the portal, worker and devcloud share the CPU."""
    expect.set_options(timeout=15_000)
    yield
    expect.set_options(timeout=5_000)


def screenshot_dir() -> Path:
    configured = os.environ.get("PASSPORT_WALK_SCREENSHOTS")
    return Path(configured) if configured else ROOT / "build" / "walk"


class Screenshots:
    """``NN-<step>-<width>.png`` for each page, at each of SIZES; the pages go on at 1280x800."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("[0-9][0-9]-*.png"):  # a shorter walk leaves no stale pictures behind
            old.unlink()
        self.folder = folder
        self.taken: list[Path] = []
        self.overflowing: dict[str, int] = {}  # page wider than the window: a sideways scroll
        self.count = 0

    def take(self, page: Any, step: str) -> None:
        self.count += 1
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
            path = self.folder / f"{self.count:02d}-{step}-{width}.png"
            page.screenshot(path=str(path))
            self.taken.append(path)
            scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
            if scroll_width > width:
                self.overflowing[path.name] = scroll_width
        page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Demo:
    url: str
    idps: DemoServer
    prod: AwsAccount


@pytest.fixture
def demo(worker: WorkerProcess, aws: Cloud, tmp_path: Path) -> Iterator[Demo]:
    """What `scripts/demo` starts, on the test database: the demo data, the demo IdPs, the portal."""
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(aws.manifest))
    loaded = io.StringIO()
    call_command("load_demo", manifest=manifest, stdout=loaded)
    assert "Demo data loaded" in loaded.getvalue(), loaded.getvalue()
    prod = AwsAccount.objects.get(name="Acme Production")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    idp_server = make_server("127.0.0.1", 0, lambda environ, start_response: [], handler_class=_Quiet)
    account_ids = [item["id"] for item in aws.manifest["accounts"]]
    idps = DemoServer(f"http://127.0.0.1:{idp_server.server_port}", url, account_ids, aws.manifest["federated_roles"])
    idp_server.set_app(idps)
    idp_thread = threading.Thread(target=idp_server.serve_forever, daemon=True)
    idp_thread.start()

    log_path = tmp_path / "daphne.log"
    env = {
        **worker.env,
        "PASSPORT_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
        "PASSPORT_SAML_IDPS": json.dumps(idps.passport_config()),
        "PASSPORT_IAM_CHECK": "true",  # as in the demo: IAM is asked about each requester's principal
    }
    try:
        with daphne_running(env, log_path, port):
            yield Demo(url=url, idps=idps, prod=prod)
    finally:
        idp_server.shutdown()
        idp_server.server_close()


def _person(new_page: Any) -> Any:
    page = new_page()
    page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
    return page


def _sign_in(page: Any, base: str, username: str, shots: Screenshots | None = None) -> None:
    page.goto(f"{base}/accounts/login/")
    expect(page.locator("#id_login")).to_be_visible()
    if shots is not None:
        shots.take(page, "sign-in")
    page.fill("#id_login", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.locator("form button[type=submit]").first.click()
    expect(page.locator("h1")).to_have_text("My access requests")


def _sso_sign_in(page: Any, base: str, idp_name: str, person: str, shots: Screenshots, step: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_role("link", name=f"Sign in with {idp_name}").click()
    expect(page.locator("h1")).to_have_text(idp_name)  # the IdP's own page
    shots.take(page, step)
    page.get_by_role("button", name=f"Sign in as {person}").click()
    expect(page.locator("h1")).to_have_text("My access requests")


def _settled(page: Any) -> None:
    """No htmx request in flight (htmx marks the element that made one), so no swap lands later."""
    page.wait_for_function("() => !document.querySelector('.htmx-request')")


def _ask(page: Any, account: AwsAccount, names: list[str], reason: str) -> None:
    """New request: the account, ticks in the picker (each kept while the list re-renders), a duration, a reason."""
    page.get_by_role("link", name=re.compile(r"New request")).first.click()
    expect(page.locator("h1")).to_have_text("New access request")
    if page.locator("#id_account").input_value() != str(account.pk):
        page.select_option("#id_account", str(account.pk))  # htmx reloads the picker for that account
        _settled(page)
    for name in names:
        expect(page.locator("#picker")).to_contain_text(name)
        page.locator(f"#picker label:has(strong:text-is('{name}')) input[type=checkbox]").check()
        expect(page.locator(f"#picker [data-selected='{name}']")).to_be_visible()
        _settled(page)
    page.select_option("#id_duration", "60")
    page.fill("#id_reason", reason)


def _submit(page: Any) -> int:
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator("[data-testid=request-status]")).to_have_text("Pending approval")
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def _approve(bob: Any, base: str, request_id: int, shots: Screenshots, step: str) -> None:
    bob.goto(f"{base}/requests/")
    bob.get_by_role("link", name=re.compile(r"^Approvals")).first.click()  # the nav may add a count
    expect(bob).to_have_url(f"{base}/requests/approvals/")
    row = bob.locator(f"tr[data-request='{request_id}']")
    expect(row).to_be_visible()
    shots.take(bob, step)
    row.get_by_role("button", name="Approve").click()
    expect(bob.locator(".flash")).to_contain_text("approved")


def _ready(page: Any, count: int) -> None:
    expect(page.locator("[data-testid=request-status]")).to_have_text("Active", timeout=READY_TIMEOUT)
    ready = page.locator("[data-testid=grant-status]:has-text('Ready')")
    expect(ready).to_have_count(count, timeout=READY_TIMEOUT)


def test_the_readme_walk(new_page: Any, demo: Demo, aws: Cloud) -> None:
    base, prod = demo.url, demo.prod
    shots = Screenshots(screenshot_dir())
    started = time.monotonic()

    # --- alice asks for web-1 and db-1 ---------------------------------------------------------
    alice = _person(new_page)
    _sign_in(alice, base, "alice", shots)
    shots.take(alice, "my-requests")
    _ask(alice, prod, ["web-1", "db-1"], "CPU alarm on the application server")
    shots.take(alice, "new-request")
    request_id = _submit(alice)
    expect(alice.get_by_role("button", name="Approve")).to_have_count(0)  # nobody approves their own
    shots.take(alice, "request-pending")

    # --- bob approves ---------------------------------------------------------------------------
    bob = _person(new_page)
    _sign_in(bob, base, "bob")
    _approve(bob, base, request_id, shots, "approvals")
    shots.take(bob, "approved")

    # alice's page follows by itself: Waiting, Provisioning, Ready; a user rs-… on both hosts.
    _ready(alice, 2)
    shots.take(alice, "request-ready")
    access_request = AccessRequest.objects.get(pk=request_id)
    usernames = {grant.username for grant in access_request.grants.all()}
    assert len(usernames) == 1 and next(iter(usernames)).startswith("rs-")
    username = usernames.pop()
    assert username in aws.host_users("web-1") and username in aws.host_users("db-1")

    # --- the terminal on web-1 ------------------------------------------------------------------
    open_terminal = alice.locator("tr:has-text('web-1') [data-testid=open-terminal]")
    with alice.context.expect_page() as opened:  # Open terminal: a tab of its own
        open_terminal.click()
    terminal = opened.value
    terminal.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
    expect(terminal).to_have_url(re.compile(r"/terminal/\d+/$"))
    expect(terminal.locator("[data-testid=terminal-status]")).to_have_text("Connected.", timeout=60_000)
    terminal.locator(".xterm-helper-textarea").focus()
    # Printed by the host, not echoed (the prompt already shows the username).
    terminal.keyboard.type("echo u=$(whoami); echo walk-$((6*7))")
    terminal.keyboard.press("Enter")
    rows = terminal.locator(".xterm-rows")
    expect(rows).to_contain_text(f"u={username}", timeout=20_000)
    expect(rows).to_contain_text("walk-42", timeout=20_000)
    shots.take(terminal, "terminal")

    # --- extend, then complete ------------------------------------------------------------------
    alice.bring_to_front()
    alice.select_option("#id_minutes", "60")
    alice.get_by_role("button", name="Extend").click()
    expect(alice.locator(".flash")).to_contain_text("extended by 60 minutes")
    assert AccessRequest.objects.get(pk=request_id).total_duration.total_seconds() == 2 * 3600
    shots.take(alice, "extended")

    alice.get_by_role("link", name=re.compile(r"Complete now")).click()
    expect(alice.locator("[data-testid=confirm-effect]")).to_contain_text("every open terminal")
    shots.take(alice, "confirm-complete")
    alice.get_by_role("button", name="Complete now").click()
    expect(alice.locator("[data-testid=request-status]")).to_have_text("Completed", timeout=60_000)
    expect(alice.locator("[data-testid=grant-status]:has-text('Removed')")).to_have_count(2, timeout=60_000)
    shots.take(alice, "request-completed")
    expect(terminal.locator("[data-testid=terminal-status]")).to_contain_text("completed", timeout=10_000)
    shots.take(terminal, "terminal-closed")
    assert username not in aws.host_users("web-1") and username not in aws.host_users("db-1")

    # The API, browsable at /api/docs/ (Swagger UI from the portal's own files), and the second factor.
    alice.goto(f"{base}/api/docs/")
    expect(alice.locator("#swagger-ui .info .title")).to_contain_text("Passport API")
    expect(alice.locator("#swagger-ui .opblock").first).to_be_visible()
    shots.take(alice, "api-docs")
    alice.goto(f"{base}/accounts/2fa/")
    expect(alice.locator("h1")).to_be_visible()
    shots.take(alice, "two-factor")

    # --- dave reads the Logbook and plays the recording back -----------------------------------
    wait_for(
        lambda: TerminalSession.objects.filter(grant__request_id=request_id, ended_at__isnull=False).exists(),
        timeout=30,
        what="the sealed recording",
    )
    dave = _person(new_page)
    _sign_in(dave, base, "dave")
    dave.get_by_role("link", name="Logbook").first.click()
    expect(dave.locator("h1")).to_be_visible()
    dave.goto(f"{base}/logbook/?request={request_id}")
    table = dave.locator("table").first
    for action in (
        "request.created",
        "request.approved",
        "grant.ready",
        "request.active",
        "terminal.started",
        "request.extended",
        "request.completing",
        "terminal.ended",
        "grant.removed",
        "request.completed",
    ):
        expect(table).to_contain_text(action)
    shots.take(dave, "logbook")
    dave.locator("[data-testid=recording-link]").first.click()
    expect(dave.locator("[data-testid=recording-verified]")).to_be_visible()
    term = dave.locator("[data-testid=recording-player] .ap-term")
    expect(term).to_be_attached()
    dave.select_option("[data-testid=recording-speed]", "4")
    dave.locator("[data-testid=recording-player] .ap-overlay-start").click()
    expect(term).to_contain_text("walk-42", timeout=60_000)
    shots.take(dave, "recording")

    dave.get_by_role("link", name="Recordings").first.click()
    dave.get_by_label("Text").fill("walk-42")
    dave.get_by_role("button", name="Search").click()
    results = dave.locator("[data-testid=recording-results]")
    expect(results).to_contain_text("walk-42")
    expect(results.locator("[data-testid=recording-row]")).to_have_count(1)
    shots.take(dave, "recordings-search")
    # "Play from here": the player seeks to where the text appeared and plays on from there.
    results.locator("[data-testid=recording-play-link]").click()
    expect(dave).to_have_url(re.compile(r"/terminal/recordings/\d+/\?t=\d+\.\d+$"))
    expect(dave.locator("[data-testid=recording-player] .ap-term")).to_contain_text("walk-42", timeout=30_000)

    # --- carol, through Customer SSO, asks; bob approves ----------------------------------------
    carol = _person(new_page)
    _sso_sign_in(carol, base, "Customer SSO (demo)", "Carol Customer", shots, "idp-customer")
    shots.take(carol, "carol-signed-in")
    _ask(carol, prod, ["web-1"], "Customer check of the web tier")
    carol_request = _submit(carol)
    _approve(bob, base, carol_request, shots, "approvals-carol")
    _ready(carol, 1)
    shots.take(carol, "carol-ready")

    # --- sam, through Support SSO, must name a ticket; asks for the Windows domain controller ----
    sam = _person(new_page)
    _sso_sign_in(sam, base, "Support SSO (demo)", "Sam Support", shots, "idp-support")
    _ask(sam, prod, ["win-ad-1"], "Customer asked for help with a GPO")
    sam.get_by_role("button", name="Submit request").click()
    refusal = sam.get_by_text("must name the customer's ticket")
    expect(refusal).to_be_visible()
    expect(sam.locator("#picker [data-selected='win-ad-1']")).to_be_visible()  # the selection survives it
    refusal.scroll_into_view_if_needed()
    shots.take(sam, "sam-needs-ticket")
    sam.fill("#id_ticket", "INC-4211")
    sam_request = _submit(sam)
    _approve(bob, base, sam_request, shots, "approvals-sam")
    _ready(sam, 1)
    shots.take(sam, "sam-ready")
    sam.get_by_role("button", name="Show password").click()
    password = sam.locator("[data-testid=windows-password]")
    expect(password).to_be_visible()
    assert len(password.inner_text().strip()) >= 12
    shots.take(sam, "windows-password")

    # --- the site admin: /admin/, whose every change the Logbook keeps -----------------------------
    admin = _person(new_page)
    _sign_in(admin, base, "admin")
    admin.goto(f"{base}/admin/")
    expect(admin.locator("#content")).to_be_visible()
    expect(admin.get_by_role("link", name=re.compile("Users|People")).first).to_be_visible()
    shots.take(admin, "admin")

    win = Instance.objects.get(account=prod, name="win-ad-1")
    assert AccessRequest.objects.get(pk=sam_request).grants.get().instance == win
    assert len(shots.taken) == 2 * shots.count
    # At 390 px no page is wider than the window (tables scroll inside their own box).
    assert not shots.overflowing, shots.overflowing
    sys.stderr.write(
        f"\nREADME walk: {shots.count} pages, {len(shots.taken)} screenshots in {shots.folder}, "
        f"{time.monotonic() - started:.0f} s\n"
    )
