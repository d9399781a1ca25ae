"""Orders: ``retry_not_before``, when a queued order rate-limited by the broker may be claimed
again."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0004_order_events"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="retry_not_before",
            field=models.DateTimeField(
                blank=True,
                help_text="After a rate limit (HTTP 429): the queued order is not claimed before "
                "this wall-clock time (the broker's reset, else one minute after the answer)",
                null=True,
            ),
        ),
    ]
