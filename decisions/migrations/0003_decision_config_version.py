"""Every decision record names the configuration version it was made with (nullable: the
records written before versions existed have none)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("decisions", "0002_loop_tasks_moved_to_decisions"),
        ("portfolio", "0007_config_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="decisionrecord",
            name="config_version",
            field=models.ForeignKey(
                blank=True,
                help_text="The configuration the decision was made with (its first "
                "evaluation's); empty on records written before versions existed",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="decisions",
                to="portfolio.configversion",
            ),
        ),
    ]
