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

from django.core.management.base import CommandError, CommandParser

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
