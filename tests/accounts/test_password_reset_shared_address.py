"""Several local people may share an address: a reset mail that fails for one of them is tried again for
those not mailed yet only (accounts.password_reset_mail carries the ids mailed into the retry): nobody is
mailed a second live link."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend

from accounts.models import User
from accounts.password_reset_mail import password_reset_mail_send
from passport_portal.celery import app
from tests.factories import make_user
from workers import tasks

pytestmark = pytest.mark.django_db

HERE = __name__
SHARED = "ops@example.test"
_sends = {"count": 0}


class SecondSendFailsOnceBackend(EmailBackend):
    def send_messages(self, messages: Any) -> int:
        _sends["count"] += 1
        if _sends["count"] == 2:
            raise ConnectionRefusedError("mail server hiccup")
        return super().send_messages(messages)


@pytest.fixture
def two_people_one_address(settings: Any) -> list[int]:
    settings.EMAIL_BACKEND = f"{HERE}.SecondSendFailsOnceBackend"
    _sends["count"] = 0
    first, second = make_user("ops-a"), make_user("ops-b")
    User.objects.filter(pk__in=[first.pk, second.pk]).update(email=SHARED)
    return [first.pk, second.pk]


def test_the_retry_mails_only_those_not_mailed_yet(two_people_one_address: list[int]) -> None:
    asked = int(time.time())
    first = password_reset_mail_send(email=SHARED, asked_at=asked)
    assert first.sent == 1 and first.retry_in is not None and len(first.mailed) == 1
    again = password_reset_mail_send(email=SHARED, asked_at=asked, attempt=1, mailed=list(first.mailed))
    assert again.sent == 1 and again.retry_in is None
    assert sorted(again.mailed) == sorted(two_people_one_address)
    assert len(mail.outbox) == 2


def test_the_task_retried_after_a_failed_send_mails_each_person_once(
    two_people_one_address: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The retry run in this process at once (eager), with the message it would queue, as a worker would.
    monkeypatch.setitem(app.conf, "task_eager_propagates", False)
    result = tasks.send_password_reset_mail.apply([SHARED, int(time.time())])
    assert len(mail.outbox) == 2, f"{len(mail.outbox)} reset mails for 2 people"
    assert result.get() == 1  # the retry's: the second person alone


@pytest.mark.parametrize("forged", ["1,2", [True], ["1"], list(range(2000)), {"a": 1}, None])
def test_a_forged_list_of_ids_mailed_is_taken_as_none(two_people_one_address: list[int], forged: Any) -> None:
    outcome = password_reset_mail_send(email=SHARED, asked_at=int(time.time()), mailed=forged)
    assert outcome.sent == 1 and outcome.retry_in is not None  # the first mailed, the second's send failed
