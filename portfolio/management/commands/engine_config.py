"""``manage.py engine_config``: show or change a pool's engine configuration."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from portfolio import actions
from portfolio.config import EngineConfigError, get_engine_config_values
from portfolio.errors import ActionError
from portfolio.management.audited import (
    VIA,
    action_error,
    actor_of,
    add_actor_argument,
    assignment,
    assignments_of,
    write_changes,
    write_settings,
)


class Command(BaseCommand):
    help = (
        "Show a pool's engine configuration (every setting, fractions also as percents), or "
        "change settings with --set key=value --reason R: all given settings are validated "
        "together and saved together, or none is, and the change is recorded in "
        "operator_actions. The engine reads the configuration at the start of each cycle, so "
        "no restart is needed."
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
            "May be repeated. Needs --reason.",
        )
        parser.add_argument("--reason", help="Why the settings change (required with --set).")
        add_actor_argument(parser)

    def handle(self, *args, **options) -> None:
        pool_name: str = options["pool"]
        pairs: list[tuple[str, str]] = options["assignments"]
        if pairs:
            self._set(pool_name, pairs, options)
        elif options["reason"] is not None:
            raise CommandError("--reason goes with --set: nothing to change")
        else:
            self._show(pool_name)

    def _show(self, pool_name: str) -> None:
        try:
            view = get_engine_config_values(pool_name)
        except EngineConfigError as exc:
            raise CommandError(str(exc)) from exc
        write_settings(
            self.stdout,
            f"Engine configuration of pool {view.pool} "
            f"(updated {view.updated_at:%Y-%m-%d %H:%M:%S %Z})",
            view.values,
            (name for name in view.values if view.is_fraction(name)),
        )

    def _set(self, pool_name: str, pairs: list[tuple[str, str]], options: dict) -> None:
        values = assignments_of(pairs)
        if options["reason"] is None:
            raise CommandError("--set needs --reason: say why the configuration changes")
        try:
            result = actions.change_engine_config(
                pool_name,
                values,
                actor=actor_of(options),
                reason=options["reason"],
                now=timezone.now(),
                via=VIA,
            )
        except ActionError as exc:
            raise action_error(
                exc, f"engine configuration of pool {pool_name!r} unchanged:"
            ) from exc
        if not result.changed:
            self.stdout.write(
                f"Engine configuration of pool {pool_name} unchanged: every value given is "
                "already set."
            )
            return
        write_changes(
            self.stdout,
            f"Updated the engine configuration of pool {pool_name}:",
            result.before,
            result.after,
        )
