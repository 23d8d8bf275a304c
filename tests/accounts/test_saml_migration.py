"""Migration 0015 run for real, both ways, on PostgreSQL: links made before it stay found by their exact
NameID and none is parked; going back parks what the old unique (store, NameID) would refuse.

Each test leaves the database migrated forward again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.saml.name_ids import UNSPECIFIED, name_id_key, name_id_lookalike

BEFORE = [("accounts", "0014_email_key_mail_domain")]
AFTER = [("accounts", "0015_saml_name_id_key")]
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def migrated_back_after(transactional_db: None) -> Iterator[None]:
    try:
        yield
    finally:
        # Forward to the latest migration of every app, not only to 0015: later ones must be there
        # for the tests that follow.
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
            cursor.execute("SET passport.logbook_truncate = 'allow'")


def test_links_made_before_stay_exact_and_none_is_parked(migrated_back_after: None) -> None:
    apps = migrate(BEFORE)
    User, SamlIdentity = apps.get_model("accounts", "User"), apps.get_model("accounts", "SamlIdentity")
    name_ids = ["AbCdEf0123", "abcdef0123", "Carol@Customer.test", "carol@customer.test"]
    for n, name_id in enumerate(name_ids):
        user = User.objects.create(username=f"p{n}")
        SamlIdentity.objects.create(user=user, identity_store="customer", name_id=name_id, idp_slug="customer")

    apps = migrate(AFTER)

    links = apps.get_model("accounts", "SamlIdentity").objects.order_by("pk")
    assert [(link.name_id, link.name_id_format, link.name_id_key, link.name_id_lookalike) for link in links] == [
        (name_id, "", name_id_key(name_id, ""), name_id_lookalike(name_id)) for name_id in name_ids
    ]
    assert len({link.name_id_key for link in links}) == 4


def test_going_back_parks_links_sharing_an_exact_name_id(migrated_back_after: None) -> None:
    """A persistent, an unspecified and a legacy "XyZ9" are three links after 0015; before it, one
    NameID had one link: the oldest keeps it, the others' NameIDs are parked for a site admin."""
    apps = migrate(AFTER)
    User, SamlIdentity = apps.get_model("accounts", "User"), apps.get_model("accounts", "SamlIdentity")
    pks = []
    for n, name_id_format in enumerate(["", PERSISTENT, UNSPECIFIED]):
        user = User.objects.create(username=f"p{n}")
        link = SamlIdentity.objects.create(
            user=user,
            identity_store="customer",
            name_id="XyZ9",
            name_id_format=name_id_format,
            name_id_key=name_id_key("XyZ9", name_id_format),
            name_id_lookalike=name_id_lookalike("XyZ9"),
            idp_slug="customer",
        )
        pks.append(link.pk)

    apps = migrate(BEFORE)

    links = apps.get_model("accounts", "SamlIdentity").objects.order_by("pk")
    assert [link.name_id for link in links] == ["XyZ9", f"duplicate-{pks[1]}:XyZ9", f"duplicate-{pks[2]}:XyZ9"]
