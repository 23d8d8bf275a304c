"""SamlIdentity.name_id_format, name_id_key and name_id_lookalike (accounts.saml.name_ids).

Every link made before kept no Format: it becomes a legacy link, keyed by its exact NameID
("legacy:" and its digest), found only by that exact NameID as before, so no two links that were
two people before become one, and none is parked. Its first sign-in records the Format
(accounts.saml.services). Its lookalike key is filled too: a new email-like link reading as it is refused.

The keys are written a batch at a time by one UPDATE each (not a CASE per row), so the table is
locked for as long as reading it takes.

Backwards: links of different kinds may share one exact NameID (a persistent and an unspecified
"XyZ9"), which the old unique (identity store, NameID) refuses. The oldest keeps its NameID; each
later one's becomes "duplicate-<id>:<NameID>", which no sign-in sends, and stays for a site admin.
"""

from typing import Any

from django.db import connections, migrations, models

_BATCH = 2000


def fill_name_id_keys(apps: Any, schema_editor: Any) -> None:
    """Key each link that has no Format (all of them at this migration) as a legacy link."""
    # The live functions, not copies: the keys must be the ones the code compares against.
    from accounts.saml.name_ids import LEGACY_FORMAT, name_id_key, name_id_lookalike

    SamlIdentity = apps.get_model("accounts", "SamlIdentity")
    connection = schema_editor.connection if schema_editor else connections[SamlIdentity.objects.db]
    legacy = SamlIdentity.objects.filter(name_id_format=LEGACY_FORMAT).order_by("pk")
    last = 0
    while batch := list(legacy.filter(pk__gt=last).values_list("pk", "name_id")[:_BATCH]):
        rows = [(pk, name_id_key(name_id, LEGACY_FORMAT), name_id_lookalike(name_id)) for pk, name_id in batch]
        _write_keys(connection, SamlIdentity._meta.db_table, rows)
        last = batch[-1][0]


def _write_keys(connection: Any, table: str, rows: list[tuple[int, str, str]]) -> None:
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    name = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {name} AS link SET name_id_key = v.key, name_id_lookalike = v.lookalike "  # noqa: S608  # nosec B608
            f"FROM (VALUES {values}) AS v (id, key, lookalike) WHERE link.id = v.id",
            [value for row in rows for value in row],
        )


def park_shared_name_ids(apps: Any, schema_editor: Any) -> None:
    """Before the old unique (identity store, NameID) comes back: one link per exact NameID keeps it."""
    SamlIdentity = apps.get_model("accounts", "SamlIdentity")
    shared = (
        SamlIdentity.objects.values("identity_store", "name_id")
        .annotate(links=models.Count("pk"))
        .filter(links__gt=1)
        .values_list("identity_store", "name_id")
    )
    for store, name_id in list(shared):
        later = SamlIdentity.objects.filter(identity_store=store, name_id=name_id).order_by("created_at", "pk")[1:]
        for link in later:
            link.name_id = f"duplicate-{link.pk}:{name_id}"[:500]
            link.save(update_fields=["name_id"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0014_email_key_mail_domain")]

    operations = [
        migrations.AddField(
            model_name="samlidentity",
            name="name_id_format",
            field=models.CharField(blank=True, db_default="", default="", max_length=256),
        ),
        migrations.AddField(
            model_name="samlidentity",
            name="name_id_key",
            field=models.CharField(db_default="", editable=False, max_length=71),
        ),
        migrations.AddField(
            model_name="samlidentity",
            name="name_id_lookalike",
            field=models.CharField(db_default="", editable=False, max_length=64),
        ),
        # Before the fill, so that backwards the parking runs before the old constraint is restored.
        migrations.RemoveConstraint(model_name="samlidentity", name="saml_identity_unique_store_name_id"),
        migrations.RunPython(fill_name_id_keys, park_shared_name_ids),
        migrations.AddConstraint(
            model_name="samlidentity",
            constraint=models.UniqueConstraint(
                condition=models.Q(("name_id_key", ""), _negated=True),
                fields=("identity_store", "name_id_key"),
                name="saml_identity_unique_store_key",
            ),
        ),
        migrations.AddConstraint(
            model_name="samlidentity",
            constraint=models.UniqueConstraint(
                condition=models.Q(
                    ("name_id_format__in", ["urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                                            "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"]),
                    models.Q(("name_id_lookalike", ""), _negated=True),
                ),
                fields=("identity_store", "name_id_lookalike"),
                name="saml_identity_unique_store_lookalike",
            ),
        ),
        migrations.AddIndex(
            model_name="samlidentity",
            index=models.Index(fields=["identity_store", "name_id"], name="saml_identity_store_name_id"),
        ),
    ]
