"""resume: let a halted pool enter commitments again."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError

from portfolio.models import Pool
from portfolio.services import set_halt


class Command(BaseCommand):
    help = "Resume a halted pool: entries are evaluated again from the next cycle."

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True)
        parser.add_argument("--reason", default="")
        parser.add_argument("--actor", default=None, help="Who (default: OS user)")

    def handle(self, *args, **options):
        try:
            changed = set_halt(
                options["pool"],
                halted=False,
                reason=options["reason"],
                actor=options["actor"] or getpass.getuser(),
            )
        except Pool.DoesNotExist:
            raise CommandError(f"No pool named {options['pool']!r}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        state = "running"
        self.stdout.write(
            f"Pool {options['pool']} is {state}."
            if changed
            else f"Pool {options['pool']} was already {state}."
        )
