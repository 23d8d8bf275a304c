"""Migration 0027 run for real on PostgreSQL: each link made before it is bound to the IdP that has
its slug then (a settings entry before an admin row, a disabled row too), and a link whose IdP is
gone to none that can come.

The test leaves the database migrated forward again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("accounts", "0026_saml_idp_trust_nonce")]
AFTER = [("accounts", "0027_saml_identity_idp_binding")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    MigrationExecutor(connection).migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def migrated_back_after(transactional_db: None) -> Iterator[None]:
    try:
        yield
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
            cursor.execute("SET passport.logbook_truncate = 'allow'")


def test_links_are_bound_to_the_idp_of_their_slug(migrated_back_after: None, settings: Any) -> None:
    settings.PASSPORT_SAML_IDPS = [{"slug": "both", "entity_id": "https://settings.test/idp"}]
    apps = migrate(BEFORE)
    User, SamlIdentity = apps.get_model("accounts", "User"), apps.get_model("accounts", "SamlIdentity")
    Idp = apps.get_model("accounts", "SamlIdentityProvider")
    row = {"name": "x", "identity_store": "customer", "sso_url": "https://x.test/sso", "x509cert": "x"}
    Idp.objects.create(slug="row", entity_id="https://row.test/idp", trust_nonce="n1", enabled=False, **row)
    Idp.objects.create(slug="both", entity_id="https://row-both.test/idp", trust_nonce="n2", **row)
    for n, slug in enumerate(["row", "both", "gone"]):
        user = User.objects.create(username=f"p{n}")
        SamlIdentity.objects.create(user=user, identity_store="customer", name_id=f"p{n}@x.test", idp_slug=slug)

    apps = migrate(AFTER)

    links = apps.get_model("accounts", "SamlIdentity").objects.order_by("pk")
    assert [(link.idp_slug, link.idp_entity_id, link.idp_trust_nonce) for link in links] == [
        ("row", "https://row.test/idp", "n1"),
        ("both", "https://settings.test/idp", ""),
        ("gone", "", ""),
    ]
