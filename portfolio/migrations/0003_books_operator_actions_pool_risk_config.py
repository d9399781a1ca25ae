"""The books (fills), the operator-action audit trail, PoolRiskConfig moved here from execution,
and the minimum of closed commitments the tier controller needs as evidence."""

import django.db.models.deletion
from decimal import Decimal
from django.db import migrations, models


def book_existing_fills(apps, schema_editor):
    """Every fill stored before the books existed becomes one booked fill of its order."""
    Order = apps.get_model("execution", "Order")
    Fill = apps.get_model("portfolio", "Fill")
    filled = Order.objects.filter(filled_quantity__gt=0, fill_value__isnull=False).order_by("id")
    Fill.objects.bulk_create(
        (
            Fill(
                pool_id=order.pool_id,
                entity_id=order.entity_id,
                commitment_id=order.commitment_id,
                order_id=order.pk,
                side=order.side,
                units=order.filled_quantity,
                value=order.fill_value,
                order_filled_quantity=order.filled_quantity,
                realized_gain=order.realized_gain,
                reason=order.reason,
                booked_at=order.filled_at or order.updated_at,
            )
            for order in filled.iterator()
        ),
        batch_size=1000,
    )


class Migration(migrations.Migration):

    dependencies = [
        ('execution', '0002_move_pool_risk_config_to_portfolio'),
        ('portfolio', '0002_risk_tiers'),
    ]

    operations = [
        migrations.AddField(
            model_name='engineconfig',
            name='min_closed_for_success_rate',
            field=models.PositiveIntegerField(default=5, help_text='Closed commitments the lookback window must hold before its success rate counts as evidence for a tier change'),
        ),
        migrations.CreateModel(
            name='Fill',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('side', models.CharField(choices=[('buy', 'Buy'), ('sell', 'Sell')], max_length=4)),
                ('units', models.DecimalField(decimal_places=4, max_digits=20)),
                ('value', models.DecimalField(decimal_places=4, help_text='Value per unit', max_digits=20)),
                ('order_filled_quantity', models.DecimalField(decimal_places=4, max_digits=20)),
                ('realized_gain', models.DecimalField(blank=True, decimal_places=4, max_digits=20, null=True)),
                ('reason', models.CharField(blank=True, help_text='Why the order was placed', max_length=32)),
                ('booked_at', models.DateTimeField(help_text='When the broker filled it')),
                ('commitment', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='fills', to='portfolio.commitment')),
                ('entity', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='fills', to='portfolio.entity')),
                ('order', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='fills', to='execution.order')),
                ('pool', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='fills', to='portfolio.pool')),
            ],
            options={
                'db_table': 'fills',
                'ordering': ['-booked_at', '-id'],
                'indexes': [models.Index(fields=['pool', 'booked_at'], name='fill_pool_booked_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(('units__gt', 0)), name='fill_units_positive'), models.CheckConstraint(condition=models.Q(('value__gt', 0)), name='fill_value_positive'), models.UniqueConstraint(fields=('order', 'order_filled_quantity'), name='one_booking_per_fill_increment')],
            },
        ),
        migrations.CreateModel(
            name='OperatorAction',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('action', models.CharField(choices=[('create_pool', 'Create pool'), ('halt', 'Halt'), ('resume', 'Resume'), ('set_risk_tier', 'Set risk tier'), ('clear_breaker', 'Clear circuit breaker'), ('change_engine_config', 'Change engine configuration'), ('change_pool_risk_limits', 'Change pool risk limits'), ('change_tier_config', 'Change risk tier parameters')], max_length=32)),
                ('actor', models.CharField(max_length=150)),
                ('reason', models.CharField(max_length=500)),
                ('via', models.CharField(blank=True, help_text='admin, command or api', max_length=20)),
                ('before', models.JSONField(blank=True, default=dict)),
                ('after', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField()),
                ('pool', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='operator_actions', to='portfolio.pool')),
            ],
            options={
                'db_table': 'operator_actions',
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['pool', '-created_at'], name='opaction_pool_created_idx'), models.Index(fields=['action', '-created_at'], name='opaction_action_created_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('actor', ''), _negated=True), models.Q(('reason', ''), _negated=True)), name='opaction_actor_reason_required')],
            },
        ),
        # The table exists since execution 0001: only the model's home changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='PoolRiskConfig',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('max_open_commitments', models.PositiveIntegerField(default=10)),
                        ('max_sector_pct', models.DecimalField(decimal_places=6, default=Decimal('0.4'), max_digits=9)),
                        ('max_daily_loss_pct', models.DecimalField(decimal_places=6, default=Decimal('0.05'), max_digits=9)),
                        ('max_order_notional', models.DecimalField(decimal_places=4, default=Decimal('10000'), max_digits=20)),
                        ('max_orders_per_minute', models.PositiveIntegerField(default=120)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('pool', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='risk_config', to='portfolio.pool')),
                    ],
                    options={
                        'verbose_name': 'pool risk configuration',
                        'db_table': 'pool_risk_configs',
                        'constraints': [models.CheckConstraint(condition=models.Q(('max_sector_pct__gt', 0), ('max_sector_pct__lte', Decimal('1'))), name='poolrisk_sector_frac'), models.CheckConstraint(condition=models.Q(('max_daily_loss_pct__gt', 0), ('max_daily_loss_pct__lte', Decimal('1'))), name='poolrisk_loss_frac'), models.CheckConstraint(condition=models.Q(('max_order_notional__gt', 0)), name='poolrisk_notional_positive')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(book_existing_fills, migrations.RunPython.noop),
    ]
