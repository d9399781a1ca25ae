"""``manage.py replay``: the engine re-run over a past window with changed settings, beside what
really happened (``decisions.replay``; docs/decisions.md, "Replay")."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from decisions.replay import (
    DEFAULT_EVERY_MINUTES,
    NEW_YORK,
    Difference,
    ReplayError,
    ReplayResult,
    RunSummary,
    replay_pool,
)
from portfolio.config_overrides import (
    OverrideError,
    describe_valid_keys,
    parse_overrides,
)
from portfolio.models import RiskTier
from project.charts import Series, line_chart


def day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = (
        "Re-run every loop of the engine over the stored recommendations and market data of a "
        "past window, moment by moment as of each moment, in a throwaway paper pool that starts "
        "from the pool's state at --from with the changed settings, and print it beside what "
        "really happened. Nothing is kept: the replay's pool, orders and records are rolled "
        "back, the real pool and the cache are not touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pool", required=True, help="The pool whose history is replayed.")
        parser.add_argument(
            "--from", dest="first_day", required=True, type=day, help="First day (YYYY-MM-DD)."
        )
        parser.add_argument(
            "--to", dest="last_day", required=True, type=day, help="Last day, included."
        )
        parser.add_argument(
            "--set",
            dest="assignments",
            metavar="KEY=VALUE",
            nargs="+",
            action="extend",
            default=[],
            help="A changed setting: an engine setting (max_active_commitments=8), "
            "risk_tier=<tier>, tier.<parameter> for the pool's tier or <tier>.<parameter> "
            "(moderate.min_confidence=0.7). Fractions are fractions: 0.04 means 4 %%.",
        )
        parser.add_argument(
            "--tier",
            dest="tier_assignments",
            nargs="+",
            action="append",
            default=[],
            metavar="TIER_OR_KEY=VALUE",
            help="Risk tier changes: --tier moderate min_confidence=0.7 changes a tier's "
            "parameters; --tier aggressive alone starts the replay in that tier.",
        )
        parser.add_argument(
            "--every",
            type=int,
            default=DEFAULT_EVERY_MINUTES,
            help="Minutes between the engine passes of a session besides the recorded moments "
            f"(default {DEFAULT_EVERY_MINUTES}, the demo's cadence; 0: the recorded moments, "
            "and the open + 15 minutes and the close of a session that has any).",
        )
        parser.add_argument(
            "--clock",
            choices=("auto", "wall", "simulated"),
            default="auto",
            help="When a recommendation counts as known: wall (from its received_at), "
            "simulated (from its generated_at: data loaded before the engine ran on earlier "
            "times), auto (simulated when the pool decided on one before it was received).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the comparison as one JSON object on the last line.",
        )
        parser.add_argument(
            "--report", type=Path, help="Write a self-contained HTML page with both equity curves."
        )

    def handle(self, *args, **options) -> None:
        if options["every"] < 0:
            raise CommandError("--every: minutes must be 0 or more")
        pairs = list(options["assignments"]) + self._tier_pairs(options["tier_assignments"])
        try:
            overrides = parse_overrides(pairs)
        except OverrideError as exc:
            problems = "\n".join(f"  {key}: {message}" for key, message in exc.errors.items())
            raise CommandError(
                f"cannot read --set:\n{problems}\nValid keys:\n{describe_valid_keys()}"
            ) from exc
        try:
            with quiet_engine(options["verbosity"] < 2):
                result = replay_pool(
                    options["pool"],
                    options["first_day"],
                    options["last_day"],
                    overrides,
                    every_minutes=options["every"],
                    clock=options["clock"],
                    progress=None if options["json"] else self.stdout.write,
                )
        except ReplayError as exc:
            raise CommandError(str(exc)) from exc
        except OverrideError as exc:  # a changed setting refused against the pool's others
            problems = "\n".join(f"  {key}: {message}" for key, message in exc.errors.items())
            raise CommandError(f"cannot apply --set:\n{problems}") from exc
        if options["report"]:
            options["report"].write_text(report_html(result), encoding="utf-8")
        if options["json"]:
            self.stdout.write(json.dumps(result.as_json(), ensure_ascii=False))
            return
        self._table(result)
        if options["report"]:
            self.stdout.write(f"Report written to {options['report']}")

    @staticmethod
    def _tier_pairs(groups: list[list[str]]) -> list[str]:
        """``--tier TIER [key=value …]`` as ``TIER.key=value`` pairs, or ``risk_tier=TIER``
        alone."""
        pairs = []
        for tier, *assignments in groups:
            if "=" in tier:
                raise CommandError(f"--tier: name the tier first ({', '.join(RiskTier.values)})")
            if not assignments:
                pairs.append(f"risk_tier={tier}")
            pairs += [f"{tier}.{assignment}" for assignment in assignments]
        return pairs

    def _table(self, result: ReplayResult) -> None:
        out = self.stdout.write
        settings = ", ".join(result.settings) or "none (reproduces reality)"
        out(
            f"Replay of pool {result.pool} from {result.window.first_day} to "
            f"{result.window.last_day}: {result.moments} moments ({result.recorded_moments} "
            f"recorded), {result.clock} clock, {result.elapsed_s:.1f} s"
        )
        out(f"Changed settings: {settings}")
        rows = comparison_rows(result.reality, result.replay)
        width = max(len(label) for label, _, _ in rows)
        left = max([len(r) for _, r, _ in rows] + [7])
        out(f"  {'':<{width}}  {'reality':>{left}}  replay")
        for label, real, new in rows:
            mark = "" if real == new else "  *"
            out(f"  {label:<{width}}  {real:>{left}}  {new}{mark}")
        out(
            f"Recommendations with another outcome: {result.differences}"
            + (f" (and {result.resized} act(s) sized differently)" if result.resized else "")
        )
        for difference in result.listed:
            out(f"  {difference_line(difference)}")
        if result.reality.tier_changes or result.replay.tier_changes:
            out("Risk tier changes:")
            for side, summary in (("reality", result.reality), ("replay", result.replay)):
                out(f"  {side}: " + ("; ".join(summary.tier_changes) or "none"))
        for note in result.notes:
            out(f"Note: {note}")


#: The apps whose log lines a replay would repeat for its throwaway pool, every cycle.
ENGINE_LOGGERS = ("decisions", "execution", "portfolio")


@contextlib.contextmanager
def quiet_engine(quiet: bool) -> Iterator[None]:
    """Only errors from the engine's loggers while the replay runs (its throwaway pool's cycles
    would otherwise log every pass); ``-v 2`` keeps them."""
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(name) for name in ENGINE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _money(value) -> str:
    return f"{value:,.2f}"


def comparison_rows(reality: RunSummary, replay: RunSummary) -> list[tuple[str, str, str]]:
    """(label, reality, replay) for the table and the report."""
    rows = [
        ("decisions", str(sum(reality.decisions.values())), str(sum(replay.decisions.values())))
    ]
    for outcome in sorted(set(reality.decisions) | set(replay.decisions)):
        rows.append(
            (
                f"  {outcome}",
                str(reality.decisions.get(outcome, 0)),
                str(replay.decisions.get(outcome, 0)),
            )
        )
    for reason in sorted(set(reality.skip_reasons) | set(replay.skip_reasons)):
        rows.append(
            (
                f"    skip: {reason}",
                str(reality.skip_reasons.get(reason, 0)),
                str(replay.skip_reasons.get(reason, 0)),
            )
        )
    rows.append(("orders", str(sum(reality.orders.values())), str(sum(replay.orders.values()))))
    for kind in sorted(set(reality.orders) | set(replay.orders)):
        rows.append(
            (f"  {kind}", str(reality.orders.get(kind, 0)), str(replay.orders.get(kind, 0)))
        )
    rows += [
        ("fills", str(reality.fills), str(replay.fills)),
        ("realized result", _money(reality.realized_gain), _money(replay.realized_gain)),
        ("unrealized at the end", _money(reality.unrealized_gain), _money(replay.unrealized_gain)),
        ("value at the end", _money(reality.end_value), _money(replay.end_value)),
        (
            "worst decline",
            f"{reality.worst_decline * 100:.2f} %",
            f"{replay.worst_decline * 100:.2f} %",
        ),
        (
            "breakers",
            str(sum(reality.breakers.values())),
            str(sum(replay.breakers.values())),
        ),
    ]
    for kind in sorted(set(reality.breakers) | set(replay.breakers)):
        rows.append(
            (f"  {kind}", str(reality.breakers.get(kind, 0)), str(replay.breakers.get(kind, 0)))
        )
    rows.append(("tier changes", str(len(reality.tier_changes)), str(len(replay.tier_changes))))
    return rows


def difference_line(difference: Difference) -> str:
    at = difference.at.astimezone(NEW_YORK)
    real, new = difference.reality, difference.replay
    return (
        f"{at:%Y-%m-%d %H:%M} {difference.recommendation} {difference.entity}: "
        f"{real.label if real else 'not evaluated'} → {new.label if new else 'not evaluated'}"
        f" | reality: {real.deciding_step if real else '-'}"
        f" | replay: {new.deciding_step if new else '-'}"
    )


def report_html(result: ReplayResult) -> str:
    """The self-contained page: inline CSS, the two equity curves as inline SVG, the table and
    the differing recommendations."""
    labels = [f"{at.astimezone(NEW_YORK):%m-%d %H:%M}" for at, _ in result.reality.equity]
    chart = line_chart(
        "replay-equity",
        "Pool value",
        labels,
        [
            Series("reality", tuple(float(v) for _, v in result.reality.equity), "main"),
            Series(
                "replay", tuple(float(v) for _, v in result.replay.equity), "other", dashed=True
            ),
        ],
        width=900,
        height=320,
    )
    return render_to_string(
        "decisions/replay_report.html",
        {
            "result": result,
            "settings": ", ".join(result.settings) or "none",
            "chart": mark_safe(chart),  # noqa: S308 - built by project.charts, every value escaped
            "rows": comparison_rows(result.reality, result.replay),
            "differences": [
                {
                    "at": f"{d.at.astimezone(NEW_YORK):%Y-%m-%d %H:%M}",
                    "recommendation": d.recommendation,
                    "entity": d.entity,
                    "reality": d.reality,
                    "replay": d.replay,
                }
                for d in result.listed
            ],
            "reality_changes": result.reality.tier_changes,
            "replay_changes": result.replay.tier_changes,
        },
    )
