"""demo: the main job on the embedded default, with a summary a person reads in ten seconds."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from decisions.tooling.demo import run_demo, side_by_side
from portfolio.models import Pool


class Command(BaseCommand):
    help = (
        "Generate the seeded sample data set, import it, create the 'demo' paper pool and its "
        "shadow 'demo-shadow', run the engine over simulated sessions, then print a summary of "
        "both side by side and how to open the admin. "
        "Needs an empty database (make demo starts from a fresh SQLite file)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--sessions", type=int, default=20, help="Simulated sessions")
        parser.add_argument(
            "--tier", default="moderate", choices=["conservative", "moderate", "aggressive"]
        )
        parser.add_argument("--data-dir", default=str(Path(settings.BASE_DIR) / "var" / "sample"))

    def handle(self, *args, **options):
        if Pool.objects.filter(name="demo").exists():
            raise CommandError(
                "A pool named 'demo' already exists: run `make demo`, which starts from a fresh "
                "database, or delete the pool first."
            )
        if options["sessions"] < 1:
            raise CommandError("--sessions must be at least 1")
        now = timezone.now()
        # One log line per cycle would drown the progress lines.
        logging.getLogger("decisions").setLevel(logging.WARNING)
        self.stdout.write(self.style.MIGRATE_HEADING("Decision execution engine — demo"))
        summary = run_demo(
            Path(options["data_dir"]),
            now=now,
            seed=options["seed"],
            sessions=options["sessions"],
            tier=options["tier"],
            progress=self.stdout.write,
        )
        self._print_summary(summary)
        self._admin_user()

    def _print_summary(self, s) -> None:
        w = self.stdout.write
        heading = self.style.MIGRATE_HEADING
        w("")
        w(
            heading(
                f"Summary — pool '{s.pool}', {len(s.sessions)} sessions "
                f"({s.sessions[0]} → {s.sessions[-1]}), {s.passes} engine passes"
            )
        )
        w(
            f"  Recommendations   {s.recommendations_seen} evaluated of "
            f"{s.recommendations_imported} imported"
        )
        total = sum(s.decisions.values())
        w(
            f"  Decisions         {total}: "
            + ", ".join(f"{k} {s.decisions[k]}" for k in ("act", "defer", "skip") if s.decisions[k])
        )
        for reason, n in s.skip_reasons.most_common():
            w(f"      skip {reason:<32} {n:>5}")
        w(
            "  Orders            "
            + (", ".join(f"{k} {v}" for k, v in sorted(s.orders.items())) or "none")
        )
        w(
            f"  Commitments       {s.open_commitments} open, {s.closed_commitments} closed "
            f"(realized {s.realized_gain:+,.2f})"
        )
        change = s.total_value - s.starting_cash
        w(f"  Pool value        {s.total_value:,.2f} ({change:+,.2f} on {s.starting_cash:,.2f})")
        w(
            f"  Active pool       {s.active_pool:,.2f}    reserve {s.reserve_balance:,.2f}    "
            f"cash {s.cash:,.2f}"
        )
        w(f"  Pool exposure     {s.pool_exposure:,.2f}")
        w(
            "  Exits             "
            + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.exits.most_common()) or "none")
        )
        w(
            f"  Reserve           {s.siphons} siphon(s) of realized gains (+{s.siphoned:,.2f}), "
            f"{s.emergency_releases} emergency release(s)"
        )
        w(
            "  Circuit breakers  "
            + (", ".join(f"{k} {v}" for k, v in s.breakers.most_common()) or "none tripped")
        )
        w(f"  Risk tier         {s.tier}" + ("" if s.tier_changes else " (unchanged)"))
        for change in s.tier_changes:
            w(f"      {change}")
        self._print_shadow(s)
        w("")
        w(
            "Every decision above is in the audit trail with its full trace: "
            "`python manage.py export_audit decisions --pool demo` or the admin."
        )

    def _print_shadow(self, s) -> None:
        """The shadow pool beside the demo pool: the same recommendations, its own setting."""
        rows = side_by_side(s)
        if not rows:
            return
        w = self.stdout.write
        w("")
        w(
            self.style.MIGRATE_HEADING(
                f"Shadow pool '{s.shadow.pool}' beside '{s.pool}': it "
                + "; ".join(s.shadow.changed_settings)
            )
        )
        first = max(len(label) for label, _, _ in rows) + 2
        width = max(len(pool) for _, pool, _ in rows) + 4
        w(f"  {'':<{first}}{s.pool:<{width}}{s.shadow.pool}")
        for label, pool, shadow in rows:
            w(f"  {label:<{first}}{pool:<{width}}{shadow}")

    def _admin_user(self) -> None:
        User = get_user_model()
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user, _ = User.objects.get_or_create(
            username="admin", defaults={"email": "admin@localhost"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        shown = "(from DEMO_ADMIN_PASSWORD)" if os.environ.get("DEMO_ADMIN_PASSWORD") else password
        self.stdout.write(
            self.style.SUCCESS(
                f"Admin: run `make serve`, open http://127.0.0.1:8000/admin/ and sign in as "
                f"admin / {shown}"
            )
        )
