"""clear_circuit_breaker: end a breaker early, recording who and why."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portfolio.breakers import clear_breaker
from portfolio.models import BreakerType, Pool


class Command(BaseCommand):
    help = (
        "Clear the circuit breakers of a type that are in force for a pool (one entity's "
        "cooldown with --entity). The event keeps its trigger figures and records who cleared "
        "it, when and why."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True)
        parser.add_argument("--type", required=True, choices=BreakerType.values, dest="kind")
        parser.add_argument("--reason", required=True, help="Why the breaker may end early")
        parser.add_argument("--entity", help="Only this entity's cooldown (single_position)")
        parser.add_argument("--actor", default=None, help="Who clears it (default: OS user)")

    def handle(self, *args, **options):
        try:
            pool = Pool.objects.get(name=options["pool"])
        except Pool.DoesNotExist:
            raise CommandError(f"No pool named {options['pool']!r}") from None
        actor = options["actor"] or getpass.getuser()
        try:
            cleared = clear_breaker(
                pool,
                options["kind"],
                actor=actor,
                reason=options["reason"],
                now=timezone.now(),
                entity=(options["entity"] or "").upper() or None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not cleared:
            raise CommandError(f"No {options['kind']} breaker is in force for pool {pool.name}")
        self.stdout.write(f"Cleared {cleared} {options['kind']} breaker(s) of {pool.name}.")
