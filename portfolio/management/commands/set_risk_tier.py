"""set_risk_tier: the manual path of the risk tier, recorded in risk_tier_history."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from portfolio import actions
from portfolio.errors import ActionError
from portfolio.management.audited import VIA, action_error, actor_of, add_actor_argument
from portfolio.models import RiskTier


class Command(BaseCommand):
    help = (
        "Set a pool's risk tier by hand (trigger 'manual'); it applies from the next cycle. "
        "Recorded in risk_tier_history and operator_actions."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True)
        parser.add_argument("--tier", required=True, choices=RiskTier.values)
        parser.add_argument("--reason", required=True)
        add_actor_argument(parser)

    def handle(self, *args, **options):
        try:
            result = actions.set_risk_tier(
                options["pool"],
                options["tier"],
                actor=actor_of(options),
                reason=options["reason"],
                now=timezone.now(),
                via=VIA,
            )
        except ActionError as exc:
            raise action_error(exc) from None
        if result.changed:
            self.stdout.write(f"Pool {options['pool']} is now {options['tier']}.")
        else:
            self.stdout.write(f"Pool {options['pool']} is already {options['tier']}: unchanged.")
