"""Position reconciliation: the ``reconciliation_events`` table and the operator action that
acknowledges one."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("portfolio", "0005_market_data_source_and_fallback"),
    ]

    operations = [
        migrations.AlterField(
            model_name="operatoraction",
            name="action",
            field=models.CharField(
                choices=[
                    ("create_pool", "Create pool"),
                    ("halt", "Halt"),
                    ("resume", "Resume"),
                    ("set_risk_tier", "Set risk tier"),
                    ("clear_breaker", "Clear circuit breaker"),
                    ("change_engine_config", "Change engine configuration"),
                    ("change_pool_risk_limits", "Change pool risk limits"),
                    ("change_tier_config", "Change risk tier parameters"),
                    ("run_cycle", "Run a decision cycle"),
                    ("acknowledge_reconciliation", "Acknowledge a reconciliation"),
                ],
                max_length=32,
            ),
        ),
        migrations.CreateModel(
            name="ReconciliationEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "subject",
                    models.CharField(
                        choices=[("units", "Units of an entity"), ("cash", "Cash")],
                        max_length=10,
                    ),
                ),
                (
                    "symbol",
                    models.CharField(
                        blank=True,
                        help_text="The entity whose units differ (a symbol the broker reports "
                        "may be unknown to the books); blank for cash",
                        max_length=16,
                    ),
                ),
                (
                    "books_value",
                    models.DecimalField(
                        decimal_places=9,
                        help_text="What the books say, as last seen: units or dollars",
                        max_digits=28,
                    ),
                ),
                (
                    "broker_value",
                    models.DecimalField(
                        decimal_places=9,
                        help_text="What the broker says, as last seen: units or dollars",
                        max_digits=28,
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("open", "Open: entity held reduce-only"),
                            ("acknowledged", "Acknowledged by an operator"),
                        ],
                        default="open",
                        max_length=20,
                    ),
                ),
                ("first_seen_at", models.DateTimeField()),
                ("last_seen_at", models.DateTimeField()),
                (
                    "seen_count",
                    models.PositiveIntegerField(
                        default=1, help_text="Runs that found the difference"
                    ),
                ),
                (
                    "agreed_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="When a later run found the books and the broker agreeing "
                        "again (the event stays open until acknowledged); cleared if the "
                        "difference comes back",
                        null=True,
                    ),
                ),
                ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                ("acknowledged_by", models.CharField(blank=True, max_length=150)),
                ("acknowledge_reason", models.CharField(blank=True, max_length=500)),
                (
                    "pool",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="reconciliation_events",
                        to="portfolio.pool",
                    ),
                ),
            ],
            options={
                "db_table": "reconciliation_events",
                "ordering": ["-first_seen_at", "-id"],
                "indexes": [
                    models.Index(fields=["pool", "status"], name="reconciliation_pool_status_idx"),
                    models.Index(fields=["-first_seen_at", "-id"], name="reconciliation_seen_idx"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("status", "open")),
                        fields=("pool", "subject", "symbol"),
                        name="one_open_reconciliation_per_subject",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("subject", "units"), models.Q(("symbol", ""), _negated=True)),
                            models.Q(("subject", "cash"), ("symbol", "")),
                            _connector="OR",
                        ),
                        name="reconciliation_symbol_matches_subject",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("status", "open"), ("acknowledged_at__isnull", True)),
                            models.Q(
                                ("status", "acknowledged"),
                                ("acknowledged_at__isnull", False),
                                models.Q(("acknowledged_by", ""), _negated=True),
                                models.Q(("acknowledge_reason", ""), _negated=True),
                            ),
                            _connector="OR",
                        ),
                        name="reconciliation_acknowledged_with_who_and_why",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("last_seen_at__gte", models.F("first_seen_at")),
                            ("seen_count__gte", 1),
                        ),
                        name="reconciliation_seen_consistent",
                    ),
                ],
            },
        ),
    ]
