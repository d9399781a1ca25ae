"""Configuration versions: the content-addressed table ``config_versions``."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("portfolio", "0006_reconciliation"),
    ]

    operations = [
        migrations.CreateModel(
            name="ConfigVersion",
            fields=[
                (
                    "digest",
                    models.CharField(
                        help_text="SHA-256 (hex) of the canonical content",
                        max_length=64,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "content",
                    models.JSONField(
                        help_text="The canonical document: engine settings and tier parameters, "
                        "decimals as text, keys sorted"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "first_pool",
                    models.ForeignKey(
                        blank=True,
                        help_text="The pool whose decision cycle first used this version",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="portfolio.pool",
                    ),
                ),
            ],
            options={
                "verbose_name": "configuration version",
                "db_table": "config_versions",
                "ordering": ["-created_at", "digest"],
                "indexes": [
                    models.Index(fields=["-created_at"], name="config_version_created_idx")
                ],
            },
        ),
    ]
