"""Requests and grants made by the release before 0014 and 0015 during a rolling deploy.

The web processes and workers of that release keep writing while this one's migrations run, with
models that know neither ``AccessRequest.aws_account_id`` nor ``Grant.platform``: their INSERTs
leave both out, and a NOT NULL column with only a Python default refuses them. Both now have a
database default.

``aws_account_id``: "" (not known), as for every request made other than by
``access_request_create``. Provisioning then acts in the AWS account the request's account names,
as the old release did for every request (``provisioning.common.request_fleet``): the one thing the
recorded id adds is refusing an account whose id was changed under the request, which
``AwsAccount.save`` refuses anyway.

``platform``: no constant is right (a Windows grant run as a Linux one would leave its user on the
host at removal). On PostgreSQL a trigger gives a grant inserted without one its instance's platform,
as 0015 did for the grants made before it and as the old release decided what to make; the database
default "" is only its marker. SQLite (the demo: one process, no rolling deploy) has no trigger.
"""

from typing import Any

from django.db import migrations, models

FORWARD_SQL = [
    """CREATE OR REPLACE FUNCTION requests_app_grant_platform_of_instance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only a grant inserted without a platform (the release before 0015): never one given.
    SELECT platform INTO NEW.platform FROM requests_app_instance WHERE id = NEW.instance_id;
    RETURN NEW;
END
$$;""",
    """CREATE TRIGGER requests_app_grant_platform_default BEFORE INSERT ON requests_app_grant
    FOR EACH ROW WHEN (NEW.platform = '') EXECUTE FUNCTION requests_app_grant_platform_of_instance();""",
]
REVERSE_SQL = [
    "DROP TRIGGER IF EXISTS requests_app_grant_platform_default ON requests_app_grant;",
    "DROP FUNCTION IF EXISTS requests_app_grant_platform_of_instance();",
]


def trigger_create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in FORWARD_SQL:
            schema_editor.execute(statement)


def trigger_drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in REVERSE_SQL:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0015_grant_platform"),
    ]

    operations = [
        migrations.AlterField(
            model_name="accessrequest",
            name="aws_account_id",
            field=models.CharField(blank=True, db_default="", default="", editable=False, max_length=12),
        ),
        migrations.AlterField(
            model_name="grant",
            name="platform",
            field=models.CharField(
                choices=[("linux", "Linux"), ("windows", "Windows")], db_default="", editable=False, max_length=16
            ),
        ),
        migrations.RunPython(trigger_create, trigger_drop),
    ]
