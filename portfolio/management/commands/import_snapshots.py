"""``manage.py import_snapshots``: import daily bars (market snapshots) from a CSV file."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from portfolio.imports import DEFAULT_MAX_BYTES, ImportFailed, import_snapshots
from portfolio.management.importing import future_hint, positive_int


class Command(BaseCommand):
    help = (
        "Import daily bars (market snapshots) from a UTF-8 CSV file with the header "
        "symbol,as_of,open,high,low,close,volume, upserted on (entity, as_of). as_of is a date "
        "YYYY-MM-DD, read as that NYSE session's close (16:00 New York time, 13:00 on an early "
        "close), or an ISO-8601 timestamp with an offset; open and volume may be empty. "
        "The whole file is validated first: if any line is bad, every bad line is listed with "
        "its number and nothing is written. A bar dated more than FUTURE_TOLERANCE_SECONDS "
        "after now is refused unless --allow-future is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "csv", help="Path of the CSV file (header: symbol,as_of,open,high,low,close,volume)."
        )
        parser.add_argument(
            "--allow-future",
            action="store_true",
            help="Accept values dated in the future (a simulation on simulated time).",
        )
        parser.add_argument(
            "--max-bytes",
            type=positive_int,
            default=DEFAULT_MAX_BYTES,
            help=f"Refuse a file larger than this (default {DEFAULT_MAX_BYTES:,} bytes).",
        )

    def handle(self, *args, **options) -> None:
        try:
            result = import_snapshots(
                options["csv"],
                now=timezone.now(),
                allow_future=options["allow_future"],
                max_bytes=options["max_bytes"],
            )
        except ImportFailed as exc:
            raise CommandError(future_hint(str(exc))) from exc
        self.stdout.write(str(result))
