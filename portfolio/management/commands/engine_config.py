"""``manage.py engine_config``: show or change a pool's engine configuration."""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolio.config import (
    EngineConfigError,
    format_number,
    get_engine_config_values,
    set_engine_config,
)


def assignment(text: str) -> tuple[str, str]:
    """``key=value`` as (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key.strip(), value.strip()


class Command(BaseCommand):
    help = (
        "Show a pool's engine configuration (every setting, fractions also as percents), or "
        "change settings with --set key=value: all given settings are validated together and "
        "saved together, or none is. The engine reads the configuration at the start of each "
        "cycle, so no restart is needed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pool", required=True, help="Name of the pool.")
        parser.add_argument(
            "--set",
            dest="assignments",
            metavar="KEY=VALUE",
            nargs="+",
            action="extend",
            type=assignment,
            default=[],
            help="Settings to change, by model field name, e.g. --set daily_loss_pct=0.04 "
            "max_active_commitments=8. Fractions are fractions: 0.04 means 4 %%. "
            "May be repeated.",
        )

    def handle(self, *args, **options) -> None:
        pool_name: str = options["pool"]
        pairs: list[tuple[str, str]] = options["assignments"]
        if pairs:
            self._set(pool_name, pairs)
        else:
            self._show(pool_name)

    def _show(self, pool_name: str) -> None:
        try:
            view = get_engine_config_values(pool_name)
        except EngineConfigError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Engine configuration of pool {view.pool} "
            f"(updated {view.updated_at:%Y-%m-%d %H:%M:%S %Z})"
        )
        shown = {name: format_number(value) for name, value in view.values.items()}
        name_width = max(len(name) for name in shown)
        value_width = max(len(text) for text in shown.values())
        self.stdout.write(f"  {'setting':<{name_width}}  {'value':>{value_width}}  percent")
        for name, text in shown.items():
            line = f"  {name:<{name_width}}  {text:>{value_width}}"
            if view.is_fraction(name):
                line += f"  {format_number(view.values[name] * 100)} %"
            self.stdout.write(line)

    def _set(self, pool_name: str, pairs: list[tuple[str, str]]) -> None:
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise CommandError(f"setting given more than once: {', '.join(repeated)}")
        try:
            change = set_engine_config(pool_name, dict(pairs))
        except EngineConfigError as exc:
            raise CommandError(
                f"engine configuration of pool {pool_name!r} unchanged:\n{exc}"
            ) from exc
        self.stdout.write(f"Updated the engine configuration of pool {change.pool}:")
        width = max(len(name) for name in change.changes)
        for name, (old, new) in change.changes.items():
            self.stdout.write(f"  {name:<{width}}  {format_number(old)} → {format_number(new)}")
