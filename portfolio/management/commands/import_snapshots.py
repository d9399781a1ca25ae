"""``manage.py import_snapshots``: import daily bars (market snapshots) from a CSV file."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from portfolio.imports import ImportFailed, import_snapshots


class Command(BaseCommand):
    help = (
        "Import daily bars (market snapshots) from a UTF-8 CSV file with the header "
        "symbol,as_of,open,high,low,close,volume, upserted on (entity, as_of). as_of is a date "
        "YYYY-MM-DD, read as that NYSE session's close (16:00 New York time, 13:00 on an early "
        "close), or an ISO-8601 timestamp with an offset; open and volume may be empty. "
        "The whole file is validated first: if any line is bad, every bad line is listed with "
        "its number and nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "csv", help="Path of the CSV file (header: symbol,as_of,open,high,low,close,volume)."
        )

    def handle(self, *args, **options) -> None:
        try:
            result = import_snapshots(options["csv"], now=timezone.now())
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(result))
