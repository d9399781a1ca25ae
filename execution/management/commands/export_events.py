"""export_events: write the order events after the watermark to a folder or an S3 bucket."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from execution.lakehouse import DestinationError, export_events
from execution.models import ExportFormat


class Command(BaseCommand):
    help = (
        "Export the order events not yet exported to DESTINATION (a folder, file:///folder or "
        "s3://bucket/prefix), one file per day under order_events/date=YYYY-MM-DD/, each "
        "event exactly once. Defaults: EVENTS_EXPORT_DESTINATION and EVENTS_EXPORT_FORMAT."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--destination",
            help="A folder, file:///folder or s3://bucket/prefix (default "
            "EVENTS_EXPORT_DESTINATION)",
        )
        parser.add_argument(
            "--format",
            choices=ExportFormat.values,
            help="jsonl or parquet (default EVENTS_EXPORT_FORMAT)",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the result as one JSON object"
        )

    def handle(self, *args, **options):
        destination = options["destination"] or settings.EVENTS_EXPORT_DESTINATION
        if not destination:
            raise CommandError(
                "no destination: pass --destination or set EVENTS_EXPORT_DESTINATION"
            )
        fmt = options["format"] or settings.EVENTS_EXPORT_FORMAT
        try:
            result = export_events(destination, fmt=fmt, now=timezone.now())
        except (DestinationError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict()))
            return
        for exported in result.files:
            self.stdout.write(
                f"wrote {exported.key} ({exported.events} event(s), ids "
                f"{exported.first_id}-{exported.last_id}, {exported.size} bytes)"
            )
        self.stdout.write(str(result))
