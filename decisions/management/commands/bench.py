"""bench: run a benchmark on a throwaway database and print its figures."""

from __future__ import annotations

import json
import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from decisions.tooling.bench_chaos import ChaosSpec, bench_chaos
from decisions.tooling.bench_ingest import IngestSpec, bench_ingest
from decisions.tooling.bench_latency import LatencySpec, bench_latency, session_refusal
from decisions.tooling.bench_worker import WorkerSpec, bench_worker
from decisions.tooling.benchmarks import (
    AuditAdminSpec,
    DecisionCycleSpec,
    bench_audit_admin,
    bench_decision_cycle,
)
from decisions.tooling.cluster import BenchUnavailable, require_postgres_and_redis

BENCHMARKS = {
    "decision_cycle": bench_decision_cycle,
    "audit_admin": bench_audit_admin,
    "ingest": bench_ingest,
    "chaos": bench_chaos,
    "latency": bench_latency,
    "worker": bench_worker,
}
#: Benchmarks that run real qcluster processes: PostgreSQL and Redis only.
CLUSTER_BENCHMARKS = ("chaos", "latency", "worker")


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
        parser.add_argument(
            "--orders", type=int, default=None, help="chaos (200), worker (300): orders"
        )
        parser.add_argument("--kills", type=int, default=5, help="chaos: SIGKILLs of a cluster")
        parser.add_argument(
            "--feed-seconds",
            type=float,
            default=120.0,
            help="chaos: seconds over which the orders are written and the kills spread",
        )
        parser.add_argument(
            "--settle-timeout",
            type=float,
            default=600.0,
            help="chaos: seconds to wait for every order to settle after the last kill",
        )
        parser.add_argument(
            "--noops", type=int, default=300, help="worker: bare no-op tasks (at most 1000)"
        )
        parser.add_argument(
            "--workers", type=int, default=2, help="chaos, latency, worker: workers per cluster"
        )
        parser.add_argument(
            "--n", type=int, default=50, help="latency: recommendations POSTed one at a time"
        )

    def handle(self, *args, **options):
        if options["benchmark"] in CLUSTER_BENCHMARKS:
            spec = self._cluster_spec(options)
        elif options["benchmark"] == "audit_admin":
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
        if options["benchmark"] in CLUSTER_BENCHMARKS:
            # Its own name, so two runs (or a test run) never share it.
            test = connection.settings_dict.setdefault("TEST", {})
            test["NAME"] = f"bench_{options['benchmark']}_{os.getpid()}"
        self.stdout.write(f"Creating a throwaway {connection.vendor} database…")
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        try:
            figures = BENCHMARKS[options["benchmark"]](spec, self.stdout.write)
        except BenchUnavailable as exc:
            raise CommandError(str(exc)) from None
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)
        for key, value in figures.items():
            self.stdout.write(f"  {key:>16}: {value}")
        self.stdout.write(json.dumps(figures))

    def _cluster_spec(self, options):
        """Validate the options of a cluster benchmark and refuse what cannot run here, before
        any database is created."""
        name = options["benchmark"]
        if options["workers"] < 1 or options["workers"] > 8:
            raise CommandError("--workers must be between 1 and 8")
        if name == "chaos":
            spec = ChaosSpec(
                orders=options["orders"] or 200,
                kills=options["kills"],
                feed_seconds=options["feed_seconds"],
                settle_timeout=options["settle_timeout"],
                workers=options["workers"],
            )
            if not 1 <= spec.orders <= 100_000 or not 0 <= spec.kills <= 100:
                raise CommandError("--orders must be 1 to 100000 and --kills 0 to 100")
            if not 10 <= spec.feed_seconds <= 3600 or not 10 <= spec.settle_timeout <= 3600:
                raise CommandError("--feed-seconds and --settle-timeout must be 10 to 3600")
        elif name == "worker":
            spec = WorkerSpec(
                orders=options["orders"] or 300, noops=options["noops"], workers=options["workers"]
            )
            if not 1 <= spec.orders <= 100_000 or not 1 <= spec.noops <= 1000:
                raise CommandError("--orders must be 1 to 100000 and --noops 1 to 1000")
        else:
            spec = LatencySpec(n=options["n"], workers=options["workers"])
            if not 1 <= spec.n <= 1000:
                raise CommandError("--n must be 1 to 1000")
        try:
            require_postgres_and_redis()
            if name == "latency":
                refusal = session_refusal(timezone.now(), spec)
                if refusal:
                    raise BenchUnavailable(refusal)
        except BenchUnavailable as exc:
            raise CommandError(str(exc)) from None
        return spec
