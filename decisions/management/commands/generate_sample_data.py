"""``manage.py generate_sample_data OUTPUT_DIR``: write the synthetic demo data set.

Thin: parses the arguments, calls ``decisions.tooling.sample_data.generate_sample_data`` and
prints the files it wrote with their row counts.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from decisions.tooling.sample_data import (
    SampleDataSpec,
    generate_sample_data,
    last_completed_session,
)
from portfolio.market_calendar import get_market_calendar

_DEFAULTS = SampleDataSpec(end=date.min)


class Command(BaseCommand):
    help = (
        "Write synthetic sample data (entities, daily bars, report dates, recommendations) for "
        "the demo into OUTPUT_DIR, in the formats the import commands read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="Directory to write into.")
        parser.add_argument("--seed", type=int, default=_DEFAULTS.seed)
        parser.add_argument("--entities", type=int, default=_DEFAULTS.entities)
        parser.add_argument("--recommendations", type=int, default=_DEFAULTS.recommendations)
        parser.add_argument(
            "--sessions",
            type=int,
            default=_DEFAULTS.simulated_sessions,
            help="Simulated sessions the demo steps through (bars also cover "
            f"{_DEFAULTS.history_sessions} sessions before them).",
        )
        parser.add_argument(
            "--end",
            help="Last simulated session, YYYY-MM-DD (default: the last complete NYSE session).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["end"] is None:
            now = timezone.now()
            end = last_completed_session(get_market_calendar(now), now)
        else:
            try:
                end = date.fromisoformat(options["end"])
            except ValueError as error:
                raise CommandError(f"--end: expected YYYY-MM-DD, got {options['end']!r}") from error
        try:
            spec = SampleDataSpec(
                seed=options["seed"],
                entities=options["entities"],
                recommendations=options["recommendations"],
                simulated_sessions=options["sessions"],
                end=end,
            )
            files = generate_sample_data(spec, Path(options["output_dir"]))
        except ValueError as error:
            raise CommandError(str(error)) from error
        sessions = files.simulated_sessions
        self.stdout.write(f"{files.entities}  ({files.entity_count} entities)")
        self.stdout.write(f"{files.snapshots}  ({files.snapshot_count} bars)")
        self.stdout.write(f"{files.reports}  ({files.report_count} report dates)")
        self.stdout.write(
            f"{files.recommendations}  ({files.recommendation_count} recommendations)"
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(sessions)} simulated sessions, {sessions[0]} to {sessions[-1]}"
            )
        )
