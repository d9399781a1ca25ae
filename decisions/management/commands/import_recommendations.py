"""``manage.py import_recommendations``: import upstream recommendations from JSON Lines."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from decisions.imports import import_recommendations
from portfolio.imports import DEFAULT_MAX_BYTES, ImportFailed
from portfolio.management.importing import future_hint, positive_int


class Command(BaseCommand):
    help = (
        "Import recommendations from a UTF-8 JSON Lines file: one object per line with id, "
        "entity, action, mode, confidence (0 to 1), generated_at (ISO-8601 with an offset) and "
        "optional thesis and risk_classification. Blank lines are ignored. The whole file is "
        "validated first: if any line is bad, every bad line is listed with its number and "
        "nothing is written. A generated_at more than FUTURE_TOLERANCE_SECONDS after now is "
        "refused unless --allow-future is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("jsonl", help="Path of the JSON Lines file.")
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
            result = import_recommendations(
                options["jsonl"],
                allow_future=options["allow_future"],
                max_bytes=options["max_bytes"],
            )
        except ImportFailed as exc:
            raise CommandError(future_hint(str(exc))) from exc
        self.stdout.write(str(result))
