"""``manage.py import_recommendations``: import upstream recommendations from JSON Lines."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from decisions.imports import import_recommendations
from portfolio.imports import ImportFailed


class Command(BaseCommand):
    help = (
        "Import recommendations from a UTF-8 JSON Lines file: one object per line with id, "
        "entity, action, mode, confidence (0 to 1), generated_at (ISO-8601 with an offset) and "
        "optional thesis and risk_classification. Blank lines are ignored. The whole file is "
        "validated first: if any line is bad, every bad line is listed with its number and "
        "nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("jsonl", help="Path of the JSON Lines file.")

    def handle(self, *args, **options) -> None:
        try:
            result = import_recommendations(options["jsonl"])
        except ImportFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(result))
