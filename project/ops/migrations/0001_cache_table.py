"""The database cache's table, so that `migrate` alone prepares a fresh database.

Created whether or not REDIS_URL is set: a database migrated while Redis was the cache stays
usable without it. `createcachetable` skips a table that already exists.
"""

from django.core.management import call_command
from django.db import migrations

CACHE_TABLE = "engine_cache"  # CACHES["default"]["LOCATION"] in project/settings.py


def create_cache_table(apps, schema_editor):
    call_command(
        "createcachetable", CACHE_TABLE, database=schema_editor.connection.alias, verbosity=0
    )


def drop_cache_table(apps, schema_editor):
    schema_editor.execute(
        f"DROP TABLE IF EXISTS {schema_editor.connection.ops.quote_name(CACHE_TABLE)}"
    )


class Migration(migrations.Migration):
    dependencies = []

    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]
