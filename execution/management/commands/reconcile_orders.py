"""reconcile_orders: settle unknown, accepted and stuck orders by asking the broker."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from execution.worker import orders_to_reconcile, reconcile_order


class Command(BaseCommand):
    help = (
        "Look up every order whose outcome is not final (unknown, accepted, or stuck in "
        "submitting) at the broker by its client order id and store what the broker says. "
        "Never submits an order the broker may already have."
    )

    def add_arguments(self, parser):
        parser.add_argument("--order", type=int, action="append", help="Only this order id")

    def handle(self, *args, **options):
        now = timezone.now()
        ids = options["order"] or orders_to_reconcile(now)
        if not ids:
            self.stdout.write("Nothing to reconcile.")
            return
        for order_id in ids:
            result = reconcile_order(order_id, now)
            self.stdout.write(f"order {order_id}: {result.status} ({result.detail})")
