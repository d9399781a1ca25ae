"""The skip reasons added since 0001: an entity held by a reconciliation event, an entity with
an unsettled order. Choices only: no schema change."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('decisions', '0003_decision_config_version'),
    ]

    operations = [
        migrations.AlterField(
            model_name='decisionrecord',
            name='skip_reason',
            field=models.CharField(blank=True, choices=[('circuit_breaker_active', 'Circuit breaker active'), ('pool_halted', 'Pool halted by an operator'), ('entity_cooldown_active', 'Entity in its loss cooldown'), ('reconciliation_hold', 'Entity held: books and broker differ'), ('outside_execution_window', 'Outside the execution window'), ('insufficient_confidence', 'Confidence below the tier minimum'), ('duplicate_recommendation', 'Already processed'), ('multiple_declining_commitments', 'Most commitments declining'), ('max_commitments_reached', 'Maximum commitments reached'), ('no_current_value', 'No current value'), ('no_open_commitment', 'No open commitment to exit'), ('exit_already_pending', 'An exit order is already pending'), ('order_unsettled', 'An order of the entity is unknown or submitting'), ('insufficient_active_pool', 'No active pool to size against'), ('position_limit_reached', 'Commitment already at its maximum size'), ('correlation_too_high', 'Correlation with holdings too high'), ('sector_limit_reached', 'Sector at its limit'), ('performance_report_imminent', 'Performance report within one session'), ('insufficient_history', 'Not enough bars for ATR'), ('pool_exposure_limit', 'Pool exposure would exceed its maximum'), ('zero_units', 'Rounds to zero units'), ('insufficient_cash', 'Not enough cash')], max_length=40),
        ),
    ]
