"""The shared body of the ``halt`` and ``resume`` commands."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from portfolio.models import Pool
from portfolio.services import set_halt


class SetHaltCommand(BaseCommand):
    """Halt (``halted = True``) or resume a pool through ``portfolio.services.set_halt``."""

    halted: bool
    reason_required: bool

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True)
        parser.add_argument("--reason", required=self.reason_required, default="")
        parser.add_argument("--actor", default=None, help="Who (default: OS user)")

    def handle(self, *args, **options):
        try:
            changed = set_halt(
                options["pool"],
                halted=self.halted,
                reason=options["reason"],
                actor=options["actor"] or getpass.getuser(),
            )
        except Pool.DoesNotExist:
            raise CommandError(f"No pool named {options['pool']!r}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        state = "halted" if self.halted else "running"
        verb = "is" if changed else "was already"
        self.stdout.write(f"Pool {options['pool']} {verb} {state}.")
