"""gate_results: what each gate saved or cost a pool (``decisions.gate_results``)."""

from __future__ import annotations

import json
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from decisions.counterfactual import PERIODS, GateResults, money, signed_money
from decisions.gate_results import DEFAULT_DAYS, WindowError, gate_results, parse_window
from portfolio.market_calendar import MARKET_TIME_ZONE
from portfolio.models import Pool


def table(pool: Pool, results: GateResults) -> list[str]:
    """The human table: one line per skip reason, the largest |result| first, and the total."""
    start = results.start.astimezone(MARKET_TIME_ZONE)
    end = results.end.astimezone(MARKET_TIME_ZONE)
    lines = [
        f"Pool {pool.name}: decisions from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} "
        f"New York, followed up to {results.now.astimezone(MARKET_TIME_ZONE):%Y-%m-%d %H:%M}",
    ]
    if not results.reasons:
        return [*lines, "No skipped act recommendation in the window."]
    width = max(len("skip reason"), *(len(t.reason) for t in results.reasons))
    header = f"{'skip reason':<{width}}  {'kept out':>8}  {'result':>14}  {'no value':>8}"
    lines += [header, "-" * len(header)]
    for total in results.reasons:
        lines.append(
            f"{total.reason:<{width}}  {total.kept_out:>8}  {signed_money(total.result):>14}  "
            f"{total.no_value:>8}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<{width}}  {results.kept_out:>8}  {signed_money(results.result):>14}  "
        f"{results.no_value:>8}"
    )
    return lines


def parse_now(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--now {text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise CommandError(f"--now {text!r} has no UTC offset (add Z or +HH:MM)")
    return value


class Command(BaseCommand):
    help = (
        "What each gate saved or cost: for every act recommendation the pool skipped in the "
        "window while it had a current value, the commitment the sizer would have made (the "
        "gate removed), followed on the later snapshots under the risk threshold monitor's "
        "rules and later defers up to its exit or now; summed per skip reason, the largest "
        f"result first. The window defaults to the last {DEFAULT_DAYS} days. --json prints one "
        "object keyed by skip reason, each with kept_out and result (a string decimal)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--pool", required=True, help="Pool name")
        parser.add_argument(
            "--from",
            dest="start",
            metavar="DATE",
            help="First day (YYYY-MM-DD, New York) or an ISO 8601 time; default: --to − 30 days",
        )
        parser.add_argument(
            "--to",
            dest="end",
            metavar="DATE",
            help="Last day, included (YYYY-MM-DD, New York), or an ISO 8601 time (excluded); "
            "default: now",
        )
        parser.add_argument(
            "--period", choices=PERIODS, default="day", help="Bucket of the per-period sums"
        )
        parser.add_argument(
            "--now", help="Follow the paths up to this time (ISO 8601 with offset; default: now)"
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object")

    def handle(self, *args, **options) -> None:
        pool = Pool.objects.select_related("engine_config").filter(name=options["pool"]).first()
        if pool is None:
            raise CommandError(f"No pool named {options['pool']!r}")
        now = parse_now(options["now"]) if options["now"] else timezone.now()
        try:
            start, end = parse_window(options["start"], options["end"], now)
        except WindowError as exc:
            raise CommandError(
                "; ".join(f"--{field} {message}" for field, message in exc.errors.items())
            ) from None
        results = gate_results(pool, start, end, now, period=options["period"])
        if options["json"]:
            self.stdout.write(json.dumps(results.as_json(), sort_keys=True))
            return
        for line in table(pool, results):
            self.stdout.write(line)
        for period in results.periods if options["verbosity"] > 1 else ():
            self.stdout.write(f"{period.start}: {period.kept_out} kept out, {money(period.result)}")
