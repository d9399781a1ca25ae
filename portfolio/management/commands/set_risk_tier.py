"""set_risk_tier: the manual path of the risk tier, recorded in risk_tier_history."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portfolio.loops import set_risk_tier
from portfolio.models import Pool, RiskTier


class Command(BaseCommand):
    help = "Set a pool's risk tier by hand (trigger 'manual'); it applies from the next cycle."

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True)
        parser.add_argument("--tier", required=True, choices=RiskTier.values)
        parser.add_argument("--reason", required=True)
        parser.add_argument("--actor", default=None, help="Who sets it (default: OS user)")

    def handle(self, *args, **options):
        try:
            changed = set_risk_tier(
                options["pool"],
                options["tier"],
                actor=options["actor"] or getpass.getuser(),
                reason=options["reason"],
                now=timezone.now(),
            )
        except Pool.DoesNotExist:
            raise CommandError(f"No pool named {options['pool']!r}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if changed:
            self.stdout.write(f"Pool {options['pool']} is now {options['tier']}.")
        else:
            self.stdout.write(f"Pool {options['pool']} is already {options['tier']}: unchanged.")
