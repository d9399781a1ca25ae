"""``manage.py import_entities``: import entities from a CSV file."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolio.imports import ImportFailed, import_entities


class Command(BaseCommand):
    help = (
        "Import entities from a UTF-8 CSV file with the header symbol,name,sector. "
        "Upsert by symbol (symbols upper-cased; name and sector updated). "
        "The whole file is validated first: if any line is bad, every bad line is listed with "
        "its number and nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", help="Path of the CSV file (header: symbol,name,sector).")

    def handle(self, *args, **options) -> None:
        try:
            result = import_entities(options["csv"])
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(result))
