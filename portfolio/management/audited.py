"""What the operator commands share: who acts, how a refused action reads, and how settings and
their changes are printed.

Every command that changes a pool calls one action of ``portfolio.actions`` with
``via="command"``; the actor is the OS user unless ``--actor`` names someone else.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from portfolio.actions import ActionResult
from portfolio.config import format_number
from portfolio.errors import ActionError

VIA = "command"

#: Keys of an ``ActionError`` that name a command option rather than a setting.
OPTION_KEYS = frozenset({"pool", "reason", "actor", "tier", "breaker_type", "entity"})


def add_actor_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--actor", default=None, help="Who acts, as recorded in the audit row (default: OS user)."
    )


def actor_of(options: Mapping[str, Any]) -> str:
    """``--actor``, or the OS user running the command."""
    if options.get("actor"):
        return options["actor"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        raise CommandError("cannot tell who runs the command: give --actor") from None


def action_error(exc: ActionError, heading: str = "") -> CommandError:
    """A refused action as a command error: one line per problem, a command option's problem
    under its option name (``--reason: a reason is required``), a setting's under its name."""
    lines = [heading] if heading else []
    for key, message in exc.errors.items():
        if not key:
            lines.append(message)
        elif key in OPTION_KEYS:
            lines.append(f"--{key.replace('_', '-')}: {message}")
        else:
            lines.append(f"{key}: {message}")
    return CommandError("\n".join(lines))


def assignment(text: str) -> tuple[str, str]:
    """``key=value`` as (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key.strip(), value.strip()


def assignments_of(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The ``--set`` pairs as a dict; a key given twice is refused."""
    pairs = list(pairs)
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise CommandError(f"setting given more than once: {', '.join(repeated)}")
    return dict(pairs)


def write_settings(
    out: TextIO, title: str, values: Mapping[str, Any], fractions: Iterable[str]
) -> None:
    """``title``, then one line per setting: its name, its value and, for a fraction, the
    value as a percent."""
    fractions = set(fractions)
    out.write(title)
    shown = {name: format_number(value) for name, value in values.items()}
    name_width = max(len(name) for name in shown)
    value_width = max(len(text) for text in shown.values())
    out.write(f"  {'setting':<{name_width}}  {'value':>{value_width}}  percent")
    for name, text in shown.items():
        line = f"  {name:<{name_width}}  {text:>{value_width}}"
        if name in fractions:
            line += f"  {format_number(values[name] * 100)} %"
        out.write(line)


def write_changes(
    out: TextIO, title: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> None:
    """``title``, then ``name  old → new`` for each changed setting (values as the audit row
    stores them)."""
    out.write(title)
    width = max(len(name) for name in after)
    for name, new in after.items():
        out.write(f"  {name:<{width}}  {before.get(name)} → {new}")


class SettingsCommand(BaseCommand):
    """Show a pool's settings, or change some with ``--set key=value … --reason R`` through
    one audited action: the shared body of ``engine_config`` and ``pool_risk_limits``.

    A subclass names what it shows (``label``, e.g. "engine configuration"), gives an example
    for ``--set`` (``set_help``), the action that changes them (``change``) and ``current``:
    (heading, {name: value}, names of the fractions) of the pool's settings now.
    """

    label: str
    set_help: str

    def change(self, pool_name: str, values: dict[str, str], **audit: Any) -> ActionResult:
        raise NotImplementedError

    def current(self, pool_name: str) -> tuple[str, Mapping[str, Any], Iterable[str]]:
        raise NotImplementedError

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
            help=f"{self.set_help} Fractions are fractions: 0.04 means 4 %%. May be repeated. "
            "Needs --reason.",
        )
        parser.add_argument("--reason", help=f"Why the {self.label} changes (required with --set).")
        add_actor_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        pool_name: str = options["pool"]
        pairs: list[tuple[str, str]] = options["assignments"]
        if pairs:
            self._set(pool_name, pairs, options)
        elif options["reason"] is not None:
            raise CommandError("--reason goes with --set: nothing to change")
        else:
            heading, values, fractions = self.current(pool_name)
            write_settings(self.stdout, heading, values, fractions)

    def _set(self, pool_name: str, pairs: list[tuple[str, str]], options: dict) -> None:
        values = assignments_of(pairs)
        if options["reason"] is None:
            raise CommandError(f"--set needs --reason: say why the {self.label} changes")
        try:
            result = self.change(
                pool_name,
                values,
                actor=actor_of(options),
                reason=options["reason"],
                now=timezone.now(),
                via=VIA,
            )
        except ActionError as exc:
            raise action_error(exc, f"{self.label} of pool {pool_name!r} unchanged:") from exc
        if not result.changed:
            self.stdout.write(
                f"{self.label[0].upper()}{self.label[1:]} of pool {pool_name} unchanged: "
                "every value given is already set."
            )
            return
        write_changes(
            self.stdout,
            f"Updated the {self.label} of pool {pool_name}:",
            result.before,
            result.after,
        )
