"""The table of the cache every web process and worker shares (settings.CACHES): sign-in limits
and the like must count across processes, not per process."""

from django.core.management import call_command
from django.db import migrations

CACHE_TABLE = "passport_cache"


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", CACHE_TABLE, database=schema_editor.connection.alias, verbosity=0)


def drop_cache_table(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(CACHE_TABLE)}")


class Migration(migrations.Migration):
    dependencies: list = []

    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]
