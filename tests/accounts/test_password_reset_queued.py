"""The password-reset page queues its mail for a worker (accounts.password_reset_mail): every address gets
the same quick answer, whatever the mail server does; the message on the broker holds nothing of the link."""

from __future__ import annotations

import logging
import re
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.test import Client

from accounts.models import SamlIdentity, User
from accounts.password_reset_mail import RETRIES, password_reset_mail_send
from passport_portal.celery import app, broker_warm
from tests.conftest import World
from tests.factories import make_user
from tests.requests_app.test_broker_down import broker_down  # noqa: F401  (the broker's port closed)
from workers import tasks

pytestmark = pytest.mark.django_db

HERE = __name__
RESET_LINK = re.compile(r"\S*/accounts/password/reset/key/(\S+)")


class SlowBackend(EmailBackend):
    def send_messages(self, messages: Any) -> int:
        time.sleep(0.5)  # a mail server's round trip (EMAIL_TIMEOUT allows 10 s)
        return super().send_messages(messages)


class DownBackend(EmailBackend):
    def send_messages(self, messages: Any) -> int:
        raise ConnectionRefusedError("mail server down")


@pytest.fixture
def reset_mail_inline() -> None:
    """Here the page's task goes to the broker (Redis) for real, and stays there for the test to read."""


def _taken_off_the_broker() -> list[list[Any]]:
    """The arguments of every reset-mail task on the broker's queue, those messages taken off it."""
    found: list[list[Any]] = []
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(app.conf.task_default_queue)
        try:
            for _ in range(1000):
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                if message.headers.get("task") == tasks.send_password_reset_mail.name:
                    found.append(list(message.payload[0]))
                    message.ack()
                else:
                    message.requeue()
        finally:
            queue.close()
    return found


@pytest.fixture
def broker() -> Iterator[None]:
    """The broker as a web process has it (readied at start: broker_warm), left without reset mails."""
    broker_warm()
    _taken_off_the_broker()
    yield
    _taken_off_the_broker()


def _reset_time(email: str) -> float:
    started = time.monotonic()
    response = Client().post("/accounts/password/reset/", {"email": email})
    assert response.status_code == 302
    return time.monotonic() - started


@pytest.mark.usefixtures("broker")
def test_the_reset_page_takes_as_long_for_an_address_nobody_has(world: World, settings: Any) -> None:
    settings.EMAIL_BACKEND = f"{HERE}.SlowBackend"
    # A process's first page (its URLs, templates, middleware) costs what it costs whatever the address:
    # the form is shown before it is posted.
    assert Client().get("/accounts/password/reset/").status_code == 200
    known, unknown = [], []
    for _ in range(3):
        known.append(_reset_time(world.requester.email))
        unknown.append(_reset_time("nobody-here@example.com"))
    # The mail server's round trip is the worker's, not the page's: the time tells nobody who has an account.
    assert abs(statistics.median(known) - statistics.median(unknown)) < 0.25, (known, unknown)
    assert mail.outbox == []
    # One message for each asking, alike: the address asked for and when.
    queued = [email for email, _ in _taken_off_the_broker()]
    assert sorted(queued) == sorted([world.requester.email, "nobody-here@example.com"] * 3)


@pytest.mark.usefixtures("broker")
def test_the_reset_page_answers_alike_with_the_mail_server_down(world: World, settings: Any) -> None:
    settings.EMAIL_BACKEND = f"{HERE}.DownBackend"
    statuses = []
    for email in (world.requester.email, "nobody-here@example.com"):
        client = Client(raise_request_exception=False)
        statuses.append(client.post("/accounts/password/reset/", {"email": email}).status_code)
    assert statuses == [302, 302]


@pytest.mark.usefixtures("broker")
def test_the_queued_reset_holds_nothing_of_the_link_and_the_worker_mails_one_that_works(world: World) -> None:
    asked = world.requester.email.upper()
    assert Client().post("/accounts/password/reset/", {"email": asked}).status_code == 302
    (message_args,) = _taken_off_the_broker()
    # The address asked for and when: no token, no link, no person.
    assert message_args[0] == asked.lower() and abs(message_args[1] - time.time()) < 60 and len(message_args) == 2

    assert tasks.send_password_reset_mail.apply(message_args).get() == 1
    (message,) = mail.outbox
    assert message.to == [world.requester.email]  # the address stored on the person
    (key,) = RESET_LINK.findall(str(message.body))
    opened = Client().get(f"/accounts/password/reset/key/{key}", follow=True)
    assert 'name="password1"' in opened.content.decode()


def test_a_message_for_someone_the_page_would_not_mail_sends_nothing(world: World) -> None:
    """Whoever reaches the broker can write such a message: it mails only whom the page would have."""
    carol = make_user("carol-saml")
    SamlIdentity.objects.create(user=carol, identity_store="customer", name_id="carol-saml@example.test")
    gone = make_user("gone")
    User.objects.filter(pk=gone.pk).update(is_active=False)
    now = int(time.time())
    for email in (carol.email, gone.email, "nobody@example.test", "x" * 300 + "@example.test", ""):
        assert password_reset_mail_send(email=email, asked_at=now).sent == 0
    # Asked longer ago than a link lives (or in the future): nobody is mailed a reset they forgot.
    for asked_at in (now - 3601, now + 3600):
        assert password_reset_mail_send(email=world.requester.email, asked_at=asked_at).sent == 0
    assert mail.outbox == []


def test_a_failed_send_is_tried_again_within_the_links_lifetime_and_no_log_holds_the_link(
    world: World, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.EMAIL_BACKEND = f"{HERE}.DownBackend"
    caplog.set_level(logging.DEBUG)
    now = int(time.time())
    email = world.requester.email
    first = password_reset_mail_send(email=email, asked_at=now)
    assert first.sent == 0 and first.retry_in == 30
    # Backing off, never past the link's life (an hour), and given up after RETRIES tries more.
    near_the_end = password_reset_mail_send(email=email, asked_at=now - 3590, attempt=3)
    assert near_the_end.retry_in is not None and near_the_end.retry_in <= 10
    last = password_reset_mail_send(email=email, asked_at=now, attempt=RETRIES)
    assert last.sent == 0 and last.retry_in is None
    logged = caplog.text
    assert "given up" in logged and "/accounts/password/reset/key/" not in logged
    assert email not in logged


@pytest.mark.usefixtures("broker_down")
def test_with_the_broker_down_the_page_sends_the_mail_itself_and_still_answers(world: World, settings: Any) -> None:
    """Nothing would find a reset mail again once the broker is back: it is sent from the page then."""
    assert Client().post("/accounts/password/reset/", {"email": world.requester.email}).status_code == 302
    assert [message.to for message in mail.outbox] == [[world.requester.email]]
    mail.outbox.clear()
    settings.EMAIL_BACKEND = f"{HERE}.DownBackend"
    client = Client(raise_request_exception=False)
    assert client.post("/accounts/password/reset/", {"email": world.requester.email}).status_code == 302
