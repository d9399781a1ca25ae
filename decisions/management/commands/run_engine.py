"""run_engine: run the engine for one pool (and its shadow pools), once or continuously."""

from __future__ import annotations

import signal
import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from decisions.engine import run_engine_pass
from portfolio.models import Pool
from portfolio.selectors import get_engine_config
from portfolio.shadows import run_with_shadows


def parse_now(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--now {value!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        raise CommandError(f"--now {value!r} has no UTC offset (e.g. 2026-11-18T11:00:00-05:00)")
    return parsed


class Command(BaseCommand):
    help = (
        "Run the engine for a pool: risk threshold monitor, performance loop, decision cycle, "
        "the execution worker on the queued orders, the risk tier scheduler (at the close) and "
        "the rebalancer (weekly); then the same for each shadow pool following it, at the same "
        "time. --once runs a single pass (with --now, on simulated time); without it, a pass "
        "every polling_interval_seconds until interrupted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True, help="Pool name")
        parser.add_argument("--once", action="store_true", help="Run one pass and exit")
        parser.add_argument(
            "--now", help="Simulated time for --once, ISO-8601 with offset (default: now)"
        )

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        try:
            pool = Pool.objects.get(name=options["pool"])
        except Pool.DoesNotExist:
            raise CommandError(f"No pool named {options['pool']!r}") from None
        if options["now"] and not options["once"]:
            raise CommandError("--now needs --once: a continuous run follows the real clock")
        if options["once"]:
            now = parse_now(options["now"]) if options["now"] else timezone.now()
            self._pass(pool, now)
            return
        self._loop(pool)

    def _loop(self, pool: Pool) -> None:
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True
            self.stdout.write("Stopping after the current pass…")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping:
            try:
                self._pass(pool, timezone.now())
            except Exception as exc:  # a failed pass is logged and retried, never fatal
                self.stderr.write(f"Pass failed: {exc!r}; retrying after the interval")
            interval = get_engine_config(pool).polling_interval_seconds
            deadline = time.monotonic() + interval
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.5)

    def _pass(self, pool: Pool, now) -> None:
        """One pass for the pool, then one for each of its shadow pools at the same ``now``
        (a shadow's failure is logged and counted, never stops the pool's)."""
        result, shadows = run_with_shadows(
            pool.pk, lambda pool_id: run_engine_pass(pool_id, now), loop="engine pass"
        )
        self._report(result)
        for shadow in shadows:
            if shadow.failed:
                self.stderr.write(f"Shadow pool {shadow.pool_id}: pass failed (see the log)")
            else:
                self._report(shadow.result)

    def _report(self, result) -> None:
        cycle = result.cycle
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(cycle.outcomes.items())) or "none"
        reasons = ", ".join(f"{k} {v}" for k, v in cycle.skip_reasons.most_common()) or "none"
        orders = ", ".join(f"{k} {v}" for k, v in sorted(result.order_statuses.items())) or "none"
        self.stdout.write(
            f"{cycle.pool} @ {cycle.now.isoformat()}: {cycle.candidates} candidate(s); "
            f"outcomes: {outcomes}; skips: {reasons}; orders: {orders}"
        )
        for loop in result.loops:
            if loop.ran or self.verbosity > 1:
                self.stdout.write(f"  {loop}")
