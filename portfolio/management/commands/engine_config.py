"""``manage.py engine_config``: show or change a pool's engine configuration."""

from __future__ import annotations

from django.core.management.base import CommandError

from portfolio import actions
from portfolio.config import EngineConfigError, get_engine_config_values
from portfolio.management.audited import SettingsCommand


class Command(SettingsCommand):
    help = (
        "Show a pool's engine configuration (every setting, fractions also as percents), or "
        "change settings with --set key=value --reason R: all given settings are validated "
        "together and saved together, or none is, and the change is recorded in "
        "operator_actions. The engine reads the configuration at the start of each cycle, so "
        "no restart is needed."
    )
    label = "engine configuration"
    set_help = (
        "Settings to change, by model field name, e.g. --set daily_loss_pct=0.04 "
        "max_active_commitments=8."
    )
    change = staticmethod(actions.change_engine_config)

    def current(self, pool_name):
        try:
            view = get_engine_config_values(pool_name)
        except EngineConfigError as exc:
            raise CommandError(str(exc)) from exc
        heading = (
            f"Engine configuration of pool {view.pool} "
            f"(updated {view.updated_at:%Y-%m-%d %H:%M:%S %Z})"
        )
        return heading, view.values, [n for n in view.values if view.is_fraction(n)]
