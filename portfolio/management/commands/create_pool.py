"""``manage.py create_pool``: create a resource pool with its configurations, or a shadow pool
that follows another (``--shadow-of``), with settings changed from the start (``--set``)."""

from __future__ import annotations

import argparse
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from portfolio.config_overrides import describe_valid_keys, parse_overrides
from portfolio.errors import ActionError
from portfolio.imports import parse_decimal
from portfolio.management.audited import VIA, actor_of, add_actor_argument
from portfolio.models import AdapterKind, PoolMode, RiskTier
from portfolio.shadows import create_pool_with_settings

DEFAULT_REASON = "created with manage.py create_pool"


def cash_amount(text: str) -> Decimal:
    """A non-negative amount of money in dollars, at most 4 decimal places."""
    try:
        value = parse_decimal(text.strip(), "cash")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"cash {text!r} is negative")
    return value


def _problems(errors: dict[str, str]) -> str:
    return "; ".join(f"{key}: {message}" if key else message for key, message in errors.items())


class Command(BaseCommand):
    help = (
        "Create a resource pool with its engine configuration, its execution risk limits and its "
        "first risk tier history row, recorded in operator_actions. A new pool starts in the "
        "conservative tier unless told otherwise. With --shadow-of OTHER the pool is a paper "
        "shadow of OTHER: the same recommendations in the same cycles, OTHER's mode, settings "
        "and starting cash and tier (unless given), changed by --set key=value."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Pool name: a slug (letters, digits, '-' and '_').")
        parser.add_argument(
            "--mode",
            choices=PoolMode.values,
            help="simulation takes simulation- and production-eligible recommendations; "
            "production only production-eligible ones. Required unless --shadow-of (a shadow "
            "takes the mode of the pool it follows).",
        )
        parser.add_argument(
            "--cash",
            type=cash_amount,
            help="Starting cash in dollars (a non-negative decimal, e.g. 100000 or 2500.50). "
            "Required unless --shadow-of (default: the followed pool's starting cash).",
        )
        parser.add_argument(
            "--tier",
            choices=RiskTier.values,
            default=None,
            help="Initial risk tier (default: conservative; for a shadow, the followed pool's "
            "starting tier).",
        )
        parser.add_argument(
            "--adapter",
            choices=AdapterKind.values,
            default=AdapterKind.PAPER,
            help="Execution adapter: paper (in-process fills, the default) or http "
            "(Alpaca-compatible execution API). A shadow pool is always paper.",
        )
        parser.add_argument(
            "--shadow-of",
            metavar="OTHER",
            help="Make the pool a paper shadow of the pool named OTHER (docs/decisions.md, "
            "'Shadow pools').",
        )
        parser.add_argument(
            "--set",
            dest="set_pairs",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="A setting changed from the start (repeatable): an engine setting "
            "(absolute_commitment_cap=2500) or risk_tier=<tier>. Applied after the pool is "
            "created, in the same transaction, each change audited.",
        )
        parser.add_argument(
            "--reason",
            default=DEFAULT_REASON,
            help=f"Why the pool is created, for the audit row (default: {DEFAULT_REASON!r}).",
        )
        add_actor_argument(parser)

    def handle(self, *args, **options) -> None:
        name = options["name"]
        shadow_of = options["shadow_of"]
        missing = [
            f"--{key}" for key in ("mode", "cash") if options[key] is None and shadow_of is None
        ]
        if missing:
            raise CommandError(
                f"cannot create pool {name!r}: {' and '.join(missing)} required "
                "(or --shadow-of OTHER)"
            )
        try:
            overrides = parse_overrides(options["set_pairs"])
        except ActionError as exc:
            raise CommandError(
                f"cannot create pool {name!r}: {_problems(exc.errors)}\n"
                f"Settings --set takes:\n{describe_valid_keys()}"
            ) from exc
        try:
            pool = create_pool_with_settings(
                name,
                overrides=overrides,
                mode=options["mode"],
                cash=options["cash"],
                tier=options["tier"],
                adapter=options["adapter"],
                shadow_of=shadow_of,
                actor=actor_of(options),
                reason=options["reason"],
                now=timezone.now(),
                via=VIA,
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
            )
            raise CommandError(f"cannot create pool {name!r}: {problems}") from exc
        except ActionError as exc:
            raise CommandError(f"cannot create pool {name!r}: {_problems(exc.errors)}") from exc
        self.stdout.write(
            f"Created pool {pool.name} (id {pool.id}): mode {pool.mode}, adapter {pool.adapter}, "
            f"tier {pool.risk_tier}, cash {pool.cash}"
        )
        if shadow_of:
            self.stdout.write(f"  a shadow of {shadow_of}: the same recommendations, in its cycles")
        for pair in overrides.pairs():
            self.stdout.write(f"  set {pair}")
