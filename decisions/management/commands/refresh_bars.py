"""``manage.py refresh_bars``: fetch daily bars from the market data API into
``market_snapshots``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from decisions.management.commands.import_recommendations import positive_int
from decisions.market_data import data_client, refresh_daily_bars


class Command(BaseCommand):
    help = (
        "Fetch the daily bars of the last complete session(s) from the market data API "
        "(MARKET_DATA_API_URL) and upsert them into market_snapshots, validated as an import "
        "is: an entity with a bad bar has none of its bars written. Without --symbols: every "
        "entity held or recommended in the last 7 days. Safe to run again: identical bars are "
        "left as they are. Exits with an error when bars were refused or not found."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--symbols",
            nargs="+",
            metavar="SYMBOL",
            help="Entities to refresh (known entities; default: held or recently recommended).",
        )
        parser.add_argument(
            "--days",
            type=positive_int,
            default=1,
            help="How many complete sessions to fetch, ending with the last one (default 1).",
        )

    def handle(self, *args, **options) -> None:
        client = data_client()
        if client is None:
            raise CommandError("MARKET_DATA_API_URL is not set (docs/configuration.md)")
        result = refresh_daily_bars(
            timezone.now(), symbols=options["symbols"], sessions=options["days"], client=client
        )
        self.stdout.write(str(result))
        for symbol, problems in sorted(result.refused.items()):
            self.stdout.write(f"  {symbol} refused: {'; '.join(problems)}")
        if result.empty:
            self.stdout.write(f"  no bars from the data API: {', '.join(result.empty)}")
        if result.refused or result.empty:
            raise CommandError(
                f"{len(result.refused)} entity(ies) refused, {len(result.empty)} without bars"
            )
