"""bench: run a benchmark on a throwaway database and print its figures."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from decisions.tooling.bench_ingest import IngestSpec, bench_ingest
from decisions.tooling.benchmarks import (
    AuditAdminSpec,
    DecisionCycleSpec,
    bench_audit_admin,
    bench_decision_cycle,
)

BENCHMARKS = {
    "decision_cycle": bench_decision_cycle,
    "audit_admin": bench_audit_admin,
    "ingest": bench_ingest,
}


class Command(BaseCommand):
    help = (
        "Run a benchmark. It builds its own data in a throwaway test database (created and "
        "destroyed here, the configured database is never touched) and prints its figures, "
        "the last line being one JSON object."
    )

    def add_arguments(self, parser):
        parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
        parser.add_argument(
            "--recommendations",
            type=int,
            default=None,
            help="Recommendations (default: 5000 for decision_cycle, 10000 for ingest)",
        )
        parser.add_argument(
            "--batch", type=int, default=1000, help="ingest: recommendations per POST"
        )
        parser.add_argument("--entities", type=int, default=500)
        parser.add_argument("--commitments", type=int, default=200)
        parser.add_argument("--repeat", type=int, default=3, help="Runs; the median is reported")
        parser.add_argument(
            "--rows", type=int, default=1_000_000, help="audit_admin: decision records to build"
        )

    def handle(self, *args, **options):
        if options["benchmark"] == "audit_admin":
            if options["rows"] < 1 or options["repeat"] < 1:
                raise CommandError("--rows and --repeat must be positive")
            spec = AuditAdminSpec(rows=options["rows"], repeat=options["repeat"])
        elif options["benchmark"] == "ingest":
            spec = IngestSpec(
                recommendations=options["recommendations"] or 10_000,
                batch=options["batch"],
                entities=options["entities"],
                repeat=options["repeat"],
            )
            if min(spec.recommendations, spec.batch, spec.entities, spec.repeat) < 1:
                raise CommandError("counts must be positive")
        else:
            spec = DecisionCycleSpec(
                recommendations=options["recommendations"] or 5000,
                entities=options["entities"],
                commitments=options["commitments"],
                repeat=options["repeat"],
            )
            if min(spec.recommendations, spec.entities, spec.repeat) < 1 or spec.commitments < 0:
                raise CommandError("counts must be positive (commitments may be 0)")
            if spec.commitments > spec.entities:
                raise CommandError("--commitments cannot exceed --entities (one per entity)")
        old_name = connection.settings_dict["NAME"]
        self.stdout.write(f"Creating a throwaway {connection.vendor} database…")
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        try:
            figures = BENCHMARKS[options["benchmark"]](spec, self.stdout.write)
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
        for key, value in figures.items():
            self.stdout.write(f"  {key:>16}: {value}")
        self.stdout.write(json.dumps(figures))
