"""The shared body of the ``halt`` and ``resume`` commands."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from portfolio import actions
from portfolio.errors import ActionError
from portfolio.management.audited import VIA, action_error, actor_of, add_actor_argument


class SetHaltCommand(BaseCommand):
    """Halt or resume a pool through ``actions.halt_pool`` / ``actions.resume_pool``; both
    need a reason, recorded in the ``operator_actions`` row."""

    halted: bool

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True)
        parser.add_argument("--reason", required=True, help="Why; recorded in the audit row")
        add_actor_argument(parser)

    def handle(self, *args, **options):
        action = actions.halt_pool if self.halted else actions.resume_pool
        try:
            result = action(
                options["pool"],
                actor=actor_of(options),
                reason=options["reason"],
                now=timezone.now(),
                via=VIA,
            )
        except ActionError as exc:
            raise action_error(exc) from None
        state = "halted" if self.halted else "running"
        verb = "is" if result.changed else "was already"
        self.stdout.write(f"Pool {options['pool']} {verb} {state}.")
