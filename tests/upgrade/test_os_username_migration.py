"""requests_app 0026 stores the OS username of everyone who has grants, and never fails on two
people who already share one (their masked ids collide): the later keeps it, marked shared, while
either still has a grant on a host under it; otherwise the later gets no name (their next request
derives one of their own)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.upgrade.helpers import migrate, migrate_to_latest


@pytest.fixture
def committed(transactional_db: None) -> Iterator[None]:
    yield
    migrate_to_latest()


def test_0026_stores_each_persons_name_and_keeps_a_live_clash_outside_the_unique_name(committed: None) -> None:
    old = migrate([("requests_app", "0025_grant_key_expiry_written")])
    account = old.get_model("accounts", "AwsAccount").objects.create(
        account_id="123456789012", name="a", role_arn="arn:aws:iam::123456789012:role/x"
    )
    instance = old.get_model("requests_app", "Instance").objects.create(
        account=account, instance_id="i-0123", region="eu-west-1", platform="linux"
    )
    users: dict[str, Any] = {}

    def grant(person: str, username: str, *, live: bool) -> None:
        user = users.setdefault(person, old.get_model("accounts", "User").objects.create(username=person))
        request = old.get_model("requests_app", "AccessRequest").objects.create(
            requester=user, account=account, reason="r", status="active" if live else "completed"
        )
        old.get_model("requests_app", "Grant").objects.create(
            request=request,
            instance=instance,
            username=username,
            platform="linux",
            status="ready" if live else "removed",
        )

    grant("alice", "rs-aaaaaaaa", live=False)
    grant("bob", "rs-aaaaaaaa", live=True)  # shares Alice's name, and is still on the host
    grant("carol", "rs-cccccccc", live=False)
    grant("dave", "rs-cccccccc", live=False)  # shares Carol's; neither is on a host
    grant("erin", "rs-eeeeeeee-abcd", live=True)  # a domain controller's: the person's part is stored

    migrate_to_latest()

    from requests_app.models import OsUsername

    ids = {name: user.pk for name, user in users.items()}
    rows = {row.user_id: (row.name, row.shares_with_id) for row in OsUsername.objects.all()}
    assert rows == {
        ids["alice"]: ("rs-aaaaaaaa", None),
        ids["bob"]: ("rs-aaaaaaaa", ids["alice"]),
        ids["carol"]: ("rs-cccccccc", None),
        ids["erin"]: ("rs-eeeeeeee", None),
    }
