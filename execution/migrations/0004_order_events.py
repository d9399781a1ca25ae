"""Order events (``order_events``) and the watermarks of their export (``event_exports``)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0003_order_leases"),
        ("portfolio", "0006_reconciliation"),
    ]

    operations = [
        migrations.CreateModel(
            name="OrderEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("queued", "Queued (written by a decision or a loop)"),
                            (
                                "submitted",
                                "Claimed by the worker and sent to the broker (submitting)",
                            ),
                            ("risk_rejected", "Stopped by the risk evaluation"),
                            ("rejected", "Refused before the broker (idempotency key mismatch)"),
                            ("answered", "The broker's answer to the submit stored"),
                            ("filled", "Filled (one event per fill increment)"),
                            ("requeued", "Queued again (not found at the broker)"),
                            (
                                "reconciled",
                                "The broker's answer stored by a lookup (reconciliation)",
                            ),
                            ("cancelled", "Cancelled"),
                        ],
                        max_length=20,
                    ),
                ),
                (
                    "from_status",
                    models.CharField(
                        blank=True,
                        help_text="The order's status before the change; empty for a new order",
                        max_length=20,
                    ),
                ),
                (
                    "to_status",
                    models.CharField(
                        help_text="The order's status after the change", max_length=20
                    ),
                ),
                ("entity", models.CharField(help_text="The entity's symbol", max_length=16)),
                ("side", models.CharField(max_length=4)),
                ("quantity", models.DecimalField(decimal_places=4, max_digits=20)),
                (
                    "filled_quantity",
                    models.DecimalField(
                        decimal_places=4,
                        help_text="Filled so far, after the change (cumulative)",
                        max_digits=20,
                    ),
                ),
                (
                    "fill_quantity",
                    models.DecimalField(
                        blank=True,
                        decimal_places=4,
                        help_text="This fill increment (filled events only)",
                        max_digits=20,
                        null=True,
                    ),
                ),
                (
                    "fill_value",
                    models.DecimalField(
                        blank=True,
                        decimal_places=4,
                        help_text="Average fill value per unit, after the change",
                        max_digits=20,
                        null=True,
                    ),
                ),
                ("broker_order_id", models.CharField(blank=True, max_length=64)),
                (
                    "client_order_id",
                    models.CharField(
                        help_text="The order's idempotency key, sent to the broker",
                        max_length=64,
                    ),
                ),
                (
                    "reason",
                    models.CharField(help_text="Why the order exists (its reason)", max_length=20),
                ),
                (
                    "detail",
                    models.CharField(
                        blank=True,
                        help_text="Why the status changed (the order's status reason)",
                        max_length=200,
                    ),
                ),
                (
                    "occurred_at",
                    models.DateTimeField(help_text="When it happened, on the engine's clock"),
                ),
                (
                    "recorded_at",
                    models.DateTimeField(help_text="When the row was written (wall clock)"),
                ),
                ("payload", models.JSONField(blank=True, default=dict)),
                (
                    "order",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="execution.order",
                    ),
                ),
                (
                    "pool",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="order_events",
                        to="portfolio.pool",
                    ),
                ),
            ],
            options={
                "db_table": "order_events",
                "ordering": ["id"],
                "indexes": [
                    models.Index(fields=["order", "id"], name="order_event_order_idx"),
                    models.Index(fields=["pool", "-id"], name="order_event_pool_idx"),
                ],
            },
        ),
        migrations.CreateModel(
            name="ExportCursor",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "destination",
                    models.CharField(
                        help_text="Where the files go: file:///folder or s3://bucket/prefix",
                        max_length=500,
                    ),
                ),
                (
                    "format",
                    models.CharField(
                        choices=[("jsonl", "JSON Lines"), ("parquet", "Parquet")], max_length=10
                    ),
                ),
                ("last_event_id", models.BigIntegerField(default=0)),
                ("pending_through_id", models.BigIntegerField(blank=True, null=True)),
                ("exported_events", models.BigIntegerField(default=0)),
                ("updated_at", models.DateTimeField()),
            ],
            options={
                "db_table": "event_exports",
                "ordering": ["destination", "format"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("destination", "format"),
                        name="event_export_destination_format_uniq",
                    )
                ],
            },
        ),
    ]
