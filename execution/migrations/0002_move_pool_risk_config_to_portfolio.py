"""PoolRiskConfig moves to ``portfolio`` (pool configuration): state only, the table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="PoolRiskConfig")],
            database_operations=[],
        ),
    ]
