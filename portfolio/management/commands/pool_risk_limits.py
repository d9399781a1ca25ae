"""``manage.py pool_risk_limits``: show or change a pool's execution risk limits."""

from __future__ import annotations

from django.core.management.base import CommandError

from portfolio import actions
from portfolio.config import POOL_RISK_FIELDS
from portfolio.management.audited import SettingsCommand
from portfolio.models import Pool
from portfolio.selectors import get_pool_risk_config

#: The limits that are fractions (0.05 = 5 %), also printed as percents.
FRACTIONS = ("max_sector_pct", "max_daily_loss_pct")


class Command(SettingsCommand):
    help = (
        "Show a pool's execution risk limits (the worker's gate, checked for every order), or "
        "change them with --set key=value --reason R: all given limits are validated together "
        "and saved together, or none is, and the change is recorded in operator_actions. The "
        "worker reads the limits for every order, so no restart is needed."
    )
    label = "execution risk limits"
    set_help = (
        "Limits to change, by field name, e.g. --set max_order_notional=25000 "
        f"max_daily_loss_pct=0.04. Limits: {', '.join(POOL_RISK_FIELDS)}."
    )
    change = staticmethod(actions.change_pool_risk_limits)

    def current(self, pool_name):
        try:
            pool = Pool.objects.get(name=pool_name)
        except Pool.DoesNotExist:
            raise CommandError(f"no pool named {pool_name!r}") from None
        limits = get_pool_risk_config(pool)
        heading = (
            f"Execution risk limits of pool {pool.name} "
            f"(updated {limits.updated_at:%Y-%m-%d %H:%M:%S %Z})"
        )
        return heading, {name: getattr(limits, name) for name in POOL_RISK_FIELDS}, FRACTIONS
