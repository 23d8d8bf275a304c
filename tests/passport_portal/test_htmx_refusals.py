"""An htmx request the portal refuses gets one short line the page shows beside the element that
asked (static/js/passport.js, the X-Passport-Message header), never a whole page htmx would not
swap: the per-person limit's wait, a request rule, not allowed, not found, a failed CSRF check, a
server error, a signed-out poll. A plain navigation still gets its page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from passport_portal.htmx_refusals import HtmxRefusalMiddleware
from requests_app.models import Grant
from tests.conftest import World
from tests.factories import make_active_request

HTMX = {"HX-Request": "true"}
T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # 5 s into a minute's window


def _client(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _assert_one_line(response: Any, status: int, text: str) -> str:
    body = response.content.decode()
    assert response.status_code == status
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Passport-Message"] == "1"
    assert body == text
    return body


def _password_url(world: World) -> str:
    access_request = make_active_request(world.requester, world.prod, world.windows)
    grant = Grant.objects.get(request=access_request)
    return reverse("requests:grant_password", kwargs={"pk": access_request.pk, "grant_pk": grant.pk})


def test_a_throttled_password_reveal_says_how_long_to_wait_in_one_line(
    world: World, settings: Any, time_machine: Any
) -> None:
    settings.PASSPORT_API_WRITES_PER_MINUTE = 1
    time_machine.move_to(T0, tick=False)
    url = _password_url(world)
    alice = _client(world.requester)
    assert alice.post(url, headers=HTMX).status_code == 409  # counted: no password is stored

    refused = alice.post(url, headers=HTMX)

    _assert_one_line(
        refused, 429, "Too many changes: you have sent more than 1 in one minute. Wait 56 seconds and try again."
    )
    assert refused["Retry-After"] == "56"
    # A form posted without htmx still gets the page that says it.
    page = alice.post(url)
    assert page.status_code == 429 and "<h1>Too many changes</h1>" in page.content.decode()


def test_a_password_the_rules_refuse_is_one_line(world: World) -> None:
    url = _password_url(world)
    _assert_one_line(_client(world.requester).post(url, headers=HTMX), 409, "No password is stored for this instance.")
    refused = _client(world.approver).post(url, headers=HTMX)  # sees the request, may not use it
    assert refused.status_code == 403 and refused["X-Passport-Message"] == "1"
    assert refused.content.decode().startswith("Only the person who asked")


def test_a_poll_refused_by_django_gets_one_line_and_a_page_still_gets_the_page(world: World) -> None:
    outsider = _client(world.outsider)
    poll = outsider.get(reverse("requests:approvals") + "?fragment=queue", headers=HTMX)
    _assert_one_line(
        poll,
        403,
        "Not allowed: you may not do this here. If you think you should, ask an approver or the site administrator.",
    )
    assert poll["Cache-Control"] == "private, no-store"  # the page's headers stay
    assert "<h1>Not allowed</h1>" in outsider.get(reverse("requests:approvals")).content.decode()
    gone = outsider.get("/requests/999999/?fragment=status", headers=HTMX)
    _assert_one_line(gone, 404, "Not found: this is gone, or not yours to see. Reload the page.")


def test_a_signed_out_poll_is_told_so_instead_of_swapping_in_the_sign_in_page(world: World) -> None:
    poll = Client().get(reverse("requests:approvals_count"), headers=HTMX)
    _assert_one_line(poll, 401, "You are signed out. Reload the page to sign in again.")
    assert Client().get(reverse("requests:approvals_count")).status_code == 302


def test_a_failed_csrf_check_on_an_htmx_post_is_one_line(world: World) -> None:
    url = _password_url(world)
    refused = _client(world.requester, enforce_csrf_checks=True).post(url, headers=HTMX)
    _assert_one_line(refused, 403, "This page has expired, so nothing was done. Reload the page and try again.")
    assert "Form expired" in _client(world.requester, enforce_csrf_checks=True).post(url).content.decode()


def test_a_server_error_for_htmx_is_one_line() -> None:
    request = RequestFactory().get("/requests/1/?fragment=status", headers=HTMX)
    answer = HtmxRefusalMiddleware(server_error)(request)
    _assert_one_line(answer, 500, "Passport could not finish this. It has been logged; try again in a moment.")
    plain = HtmxRefusalMiddleware(server_error)(RequestFactory().get("/requests/1/"))
    assert plain.status_code == 500 and "Something went wrong" in plain.content.decode()


def test_a_history_restore_gets_the_whole_page(world: World) -> None:
    outsider = _client(world.outsider)
    answer = outsider.get(reverse("requests:approvals"), headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert answer.status_code == 403 and "<h1>Not allowed</h1>" in answer.content.decode()
