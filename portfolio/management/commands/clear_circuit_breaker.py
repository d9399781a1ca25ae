"""clear_circuit_breaker: end a breaker early, recording who and why."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portfolio import actions
from portfolio.errors import ActionError
from portfolio.management.audited import VIA, action_error, actor_of, add_actor_argument
from portfolio.models import BreakerType


class Command(BaseCommand):
    help = (
        "Clear the circuit breakers of a type that are in force for a pool (one entity's "
        "cooldown with --entity). The event keeps its trigger figures and records who cleared "
        "it, when and why; the clearing is recorded in operator_actions."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True)
        parser.add_argument("--type", required=True, choices=BreakerType.values, dest="kind")
        parser.add_argument("--reason", required=True, help="Why the breaker may end early")
        parser.add_argument("--entity", help="Only this entity's cooldown (single_position)")
        add_actor_argument(parser)

    def handle(self, *args, **options):
        pool, kind = options["pool"], options["kind"]
        try:
            result = actions.clear_breaker(
                pool,
                kind,
                actor=actor_of(options),
                reason=options["reason"],
                now=timezone.now(),
                entity=(options["entity"] or "").upper() or None,
                via=VIA,
            )
        except ActionError as exc:
            raise action_error(exc) from None
        if not result.changed:
            raise CommandError(f"No {kind} breaker is in force for pool {pool}")
        cleared = len(result.before["in_force"])
        self.stdout.write(f"Cleared {cleared} {kind} breaker(s) of {pool}.")
