"""``manage.py import_reports``: import performance report dates from a CSV file."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolio.imports import ImportFailed, import_reports


class Command(BaseCommand):
    help = (
        "Import performance report (earnings) dates from a UTF-8 CSV file with the header "
        "symbol,report_date; a date already stored, or repeated, is left as it is. "
        "The whole file is validated first: if any line is bad, every bad line is listed with "
        "its number and nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", help="Path of the CSV file (header: symbol,report_date).")

    def handle(self, *args, **options) -> None:
        try:
            result = import_reports(options["csv"])
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(result))
