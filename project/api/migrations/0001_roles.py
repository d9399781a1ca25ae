"""The API's roles as groups: viewer, operator, ingest (see project/api/roles.py)."""

from django.db import migrations

ROLES = ("viewer", "operator", "ingest")


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
