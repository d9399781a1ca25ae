"""setup_schedules: create or update the engine's django-q2 schedules (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from decisions.schedules import SCHEDULES, setup_schedules


class Command(BaseCommand):
    help = (
        "Create or update the django-q2 schedules of the decision loop, the risk threshold "
        "monitor, the performance loop, the risk tier scheduler, the rebalancer, the order "
        "sweeper and reconciliation. Running it twice leaves the same rows."
    )

    def handle(self, *args, **options):
        specs = {spec.name: spec for spec in SCHEDULES}
        for name, outcome in setup_schedules():
            spec = specs[name]
            when = f"every {spec.minutes} min" if spec.minutes else f"cron '{spec.cron}' (New York)"
            self.stdout.write(f"{outcome:>9}  {name:<34} {when:<32} {spec.func}")
