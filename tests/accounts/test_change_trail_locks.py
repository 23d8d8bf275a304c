"""What a recorded bulk update() locks: no more than the UPDATE it stands for.

An UPDATE of a non-key column takes FOR NO KEY UPDATE, which lets any insert of a row pointing at
that one (a Logbook entry, a request, a membership: FOR KEY SHARE on it) go on. The trail's
update() reads the rows first, locked: the same kind of lock, so a script's update of a person does
not wait on (or deadlock with) a transaction that just wrote something of theirs.
"""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, connections, transaction

from accounts.models import User
from audit.models import LogbookEntry

pytestmark = pytest.mark.usefixtures("live_db")


def _update_beside_a_key_share_holder(person: User) -> OperationalError | None:
    held, release = threading.Event(), threading.Event()

    def key_share_holder() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # What an INSERT of a row with a foreign key to this person takes on it.
                cursor.execute("SELECT id FROM accounts_user WHERE id = %s FOR KEY SHARE", [person.pk])
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=key_share_holder)
    thread.start()
    assert held.wait(10)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '1500ms'")
            User.objects.filter(pk=person.pk).update(is_staff=True)
    except OperationalError as error:
        return error
    finally:
        release.set()
        thread.join()
    return None


def test_a_recorded_update_does_not_wait_on_an_insert_pointing_at_the_row() -> None:
    person = User.objects.create_user(username="lockee", email="lockee@example.test", password="x" * 20)
    assert _update_beside_a_key_share_holder(person) is None
    person.refresh_from_db()
    assert person.is_staff
    changed = LogbookEntry.objects.filter(action="person.changed", detail__bulk="update").last()
    assert changed is not None and changed.detail["changes"] == {"is_staff": {"before": False, "after": True}}
