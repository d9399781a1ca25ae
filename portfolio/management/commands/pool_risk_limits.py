"""``manage.py pool_risk_limits``: show or change a pool's execution risk limits."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from portfolio import actions
from portfolio.config import POOL_RISK_FIELDS
from portfolio.errors import ActionError
from portfolio.management.audited import (
    VIA,
    action_error,
    actor_of,
    add_actor_argument,
    assignment,
    assignments_of,
    write_changes,
    write_settings,
)
from portfolio.models import Pool
from portfolio.selectors import get_pool_risk_config

#: The limits that are fractions (0.05 = 5 %), also printed as percents.
FRACTIONS = ("max_sector_pct", "max_daily_loss_pct")


class Command(BaseCommand):
    help = (
        "Show a pool's execution risk limits (the worker's gate, checked for every order), or "
        "change them with --set key=value --reason R: all given limits are validated together "
        "and saved together, or none is, and the change is recorded in operator_actions. The "
        "worker reads the limits for every order, so no restart is needed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pool", required=True, help="Name of the pool.")
        parser.add_argument(
            "--set",
            dest="assignments",
            metavar="KEY=VALUE",
            nargs="+",
            action="extend",
            type=assignment,
            default=[],
            help="Limits to change, by field name, e.g. --set max_order_notional=25000 "
            "max_daily_loss_pct=0.04. Fractions are fractions: 0.04 means 4 %%. "
            f"Limits: {', '.join(POOL_RISK_FIELDS)}. May be repeated. Needs --reason.",
        )
        parser.add_argument("--reason", help="Why the limits change (required with --set).")
        add_actor_argument(parser)

    def handle(self, *args, **options) -> None:
        pool_name: str = options["pool"]
        pairs: list[tuple[str, str]] = options["assignments"]
        if pairs:
            self._set(pool_name, pairs, options)
        elif options["reason"] is not None:
            raise CommandError("--reason goes with --set: nothing to change")
        else:
            self._show(pool_name)

    def _show(self, pool_name: str) -> None:
        try:
            pool = Pool.objects.get(name=pool_name)
        except Pool.DoesNotExist:
            raise CommandError(f"no pool named {pool_name!r}") from None
        limits = get_pool_risk_config(pool)
        write_settings(
            self.stdout,
            f"Execution risk limits of pool {pool.name} "
            f"(updated {limits.updated_at:%Y-%m-%d %H:%M:%S %Z})",
            {name: getattr(limits, name) for name in POOL_RISK_FIELDS},
            FRACTIONS,
        )

    def _set(self, pool_name: str, pairs: list[tuple[str, str]], options: dict) -> None:
        values = assignments_of(pairs)
        if options["reason"] is None:
            raise CommandError("--set needs --reason: say why the limits change")
        try:
            result = actions.change_pool_risk_limits(
                pool_name,
                values,
                actor=actor_of(options),
                reason=options["reason"],
                now=timezone.now(),
                via=VIA,
            )
        except ActionError as exc:
            raise action_error(
                exc, f"execution risk limits of pool {pool_name!r} unchanged:"
            ) from exc
        if not result.changed:
            self.stdout.write(
                f"Execution risk limits of pool {pool_name} unchanged: every value given is "
                "already set."
            )
            return
        write_changes(
            self.stdout,
            f"Updated the execution risk limits of pool {pool_name}:",
            result.before,
            result.after,
        )
