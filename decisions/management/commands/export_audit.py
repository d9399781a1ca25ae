"""``manage.py export_audit``: export one audit table of a pool as JSON Lines."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from decisions.exports import AUDIT_TABLES, ExportFailed, export_audit, parse_time_bound


def time_bound(text: str) -> datetime:
    """An aware ``--since`` / ``--until`` bound (see ``parse_time_bound``)."""
    try:
        return parse_time_bound(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Command(BaseCommand):
    help = (
        "Export one audit table of a pool as JSON Lines, ordered by id: every column of the "
        "table (foreign keys as <name>_id), decimals as strings, datetimes ISO-8601 in UTC, "
        "decision_trace and an operator action's before/after as JSON objects. Rows are "
        "streamed, so any size of table can be exported. Writes to stdout unless --output is "
        "given; the row count goes to stderr when the rows go to stdout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("table", choices=list(AUDIT_TABLES), help="Table to export.")
        parser.add_argument("--pool", required=True, help="Name of the pool.")
        parser.add_argument(
            "--output",
            metavar="FILE",
            help="Write to FILE (replaced only once the export is complete) instead of stdout.",
        )
        parser.add_argument(
            "--since",
            type=time_bound,
            metavar="ISO",
            help="Only rows at or after this instant: an ISO-8601 timestamp with an offset, or "
            "a date YYYY-MM-DD (midnight New York time).",
        )
        parser.add_argument(
            "--until",
            type=time_bound,
            metavar="ISO",
            help="Only rows strictly before this instant (same formats as --since).",
        )

    def handle(self, *args, **options) -> None:
        arguments = {"since": options["since"], "until": options["until"]}
        table, pool, output = options["table"], options["pool"], options["output"]
        try:
            if output is None:
                result = export_audit(table, pool, self.stdout, **arguments)
                self.stderr.write(str(result))
                return
            # Written beside the target and renamed at the end: a failed export never leaves
            # a truncated file under the expected name.
            target = Path(output)
            partial = target.with_name(f".{target.name}.partial")
            try:
                with open(partial, "w", encoding="utf-8", newline="\n") as handle:
                    result = export_audit(table, pool, handle, **arguments)
                os.replace(partial, target)
            finally:
                if partial.exists():
                    partial.unlink()
        except ExportFailed as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from exc
        self.stdout.write(f"{result} to {output}")
