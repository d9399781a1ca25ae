"""``manage.py import_entities``: import entities from a CSV file."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolio.imports import DEFAULT_MAX_BYTES, ImportFailed, import_entities
from portfolio.management.importing import positive_int


class Command(BaseCommand):
    help = (
        "Import entities from a UTF-8 CSV file with the header symbol,name,sector. "
        "Upsert by symbol (symbols upper-cased; name and sector updated). "
        "The whole file is validated first: if any line is bad, every bad line is listed with "
        "its number and nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", help="Path of the CSV file (header: symbol,name,sector).")
        parser.add_argument(
            "--max-bytes",
            type=positive_int,
            default=DEFAULT_MAX_BYTES,
            help=f"Refuse a file larger than this (default {DEFAULT_MAX_BYTES:,} bytes).",
        )

    def handle(self, *args, **options) -> None:
        try:
            result = import_entities(options["csv"], max_bytes=options["max_bytes"])
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(result))
