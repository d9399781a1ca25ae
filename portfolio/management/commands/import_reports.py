"""``manage.py import_reports``: import performance report dates from a CSV file."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolio.imports import DEFAULT_MAX_BYTES, REPORT_HORIZON_DAYS, ImportFailed, import_reports
from portfolio.management.importing import future_hint, positive_int


class Command(BaseCommand):
    help = (
        "Import performance report (earnings) dates from a UTF-8 CSV file with the header "
        "symbol,report_date; a date already stored, or repeated, is left as it is. "
        "The whole file is validated first: if any line is bad, every bad line is listed with "
        "its number and nothing is written. A report date more than "
        f"{REPORT_HORIZON_DAYS} days after today is refused unless --allow-future is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", help="Path of the CSV file (header: symbol,report_date).")
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
            result = import_reports(
                options["csv"], allow_future=options["allow_future"], max_bytes=options["max_bytes"]
            )
        except ImportFailed as exc:
            raise CommandError(future_hint(str(exc))) from exc
        self.stdout.write(str(result))
