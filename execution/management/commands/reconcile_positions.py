"""reconcile_positions: compare one pool's books with its broker and record the differences."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from execution.reconciliation import BrokerUnavailable, describe, reconcile_positions
from portfolio.models import Pool


class Command(BaseCommand):
    help = (
        "Compare the broker's positions (and, for the only pool on the execution API, its "
        "cash) with the pool's open commitments and cash, and record each difference as a "
        "reconciliation event: the entity is held reduce-only until an operator acknowledges "
        "it (admin or API). Never sends an order and never changes the books."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True, help="The pool's name")
        parser.add_argument(
            "--json", action="store_true", help="Print the result as one JSON object"
        )

    def handle(self, *args, **options):
        name = options["pool"]
        pool = Pool.objects.filter(name=name).first()
        if pool is None:
            raise CommandError(f"--pool: no pool named {name!r}")
        try:
            result = reconcile_positions(pool, timezone.now())
        except BrokerUnavailable as exc:
            raise CommandError(f"pool {pool.name}: broker unavailable ({exc})") from None
        except RuntimeError as exc:  # the adapter is not configured (EXECUTION_API_URL)
            raise CommandError(f"pool {pool.name}: {exc}") from None
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        self.stdout.write(f"pool {result.pool}: {result.detail}")
        if not result.compared:
            return
        for difference in result.differences:
            if difference in result.known:
                continue
            event = result.events.get(difference.key)
            state = (
                "opened"
                if event in result.opened
                else "seen again"
                if event in result.seen_again
                else "open"
            )
            self.stdout.write(f"  {describe(difference)} (event {event}, {state})")
        for difference in result.known:
            self.stdout.write(f"  {describe(difference)} (already acknowledged: no new event)")
        if result.agreed:
            ids = ", ".join(str(pk) for pk in result.agreed)
            self.stdout.write(
                f"  books and broker agree again for event(s) {ids}: "
                "left open until an operator acknowledges"
            )
        if result.skipped:
            self.stdout.write(f"  skipped (an order on its way): {', '.join(result.skipped)}")
        self.stdout.write(f"  cash: {result.cash_detail}")
