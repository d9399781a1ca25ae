"""Shadow pools: a paper pool may follow another (``pools.shadow_of``); the database refuses a
shadow with any adapter but the paper broker, and a pool following itself."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("portfolio", "0007_config_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="pool",
            name="shadow_of",
            field=models.ForeignKey(
                blank=True,
                help_text="The pool this paper pool follows: the same recommendations, in the "
                "same cycles, with its own settings (docs/decisions.md, 'Shadow pools')",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="shadows",
                to="portfolio.pool",
            ),
        ),
        migrations.AddConstraint(
            model_name="pool",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("shadow_of__isnull", True), ("adapter", "paper"), _connector="OR"
                ),
                name="shadow_pool_is_paper",
            ),
        ),
        migrations.AddConstraint(
            model_name="pool",
            constraint=models.CheckConstraint(
                condition=models.Q(("shadow_of", models.F("id")), _negated=True),
                name="shadow_pool_not_itself",
            ),
        ),
    ]
