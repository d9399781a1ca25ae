"""``manage.py create_pool``: create a resource pool with its configurations."""

from __future__ import annotations

import argparse
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from portfolio import actions
from portfolio.errors import ActionError
from portfolio.imports import parse_decimal
from portfolio.management.audited import VIA, actor_of, add_actor_argument
from portfolio.models import AdapterKind, PoolMode, RiskTier

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


class Command(BaseCommand):
    help = (
        "Create a resource pool with its engine configuration, its execution risk limits and its "
        "first risk tier history row, recorded in operator_actions. A new pool starts in the "
        "conservative tier unless told otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Pool name: a slug (letters, digits, '-' and '_').")
        parser.add_argument(
            "--mode",
            required=True,
            choices=PoolMode.values,
            help="simulation takes simulation- and production-eligible recommendations; "
            "production only production-eligible ones.",
        )
        parser.add_argument(
            "--cash",
            required=True,
            type=cash_amount,
            help="Starting cash in dollars (a non-negative decimal, e.g. 100000 or 2500.50).",
        )
        parser.add_argument(
            "--tier",
            choices=RiskTier.values,
            default=RiskTier.CONSERVATIVE,
            help="Initial risk tier (default: conservative).",
        )
        parser.add_argument(
            "--adapter",
            choices=AdapterKind.values,
            default=AdapterKind.PAPER,
            help="Execution adapter: paper (in-process fills, the default) or http "
            "(Alpaca-compatible execution API).",
        )
        parser.add_argument(
            "--reason",
            default=DEFAULT_REASON,
            help=f"Why the pool is created, for the audit row (default: {DEFAULT_REASON!r}).",
        )
        add_actor_argument(parser)

    def handle(self, *args, **options) -> None:
        name = options["name"]
        try:
            pool = actions.create_pool(
                name,
                mode=options["mode"],
                cash=options["cash"],
                tier=options["tier"],
                adapter=options["adapter"],
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
            problems = "; ".join(
                f"{field}: {message}" if field else message for field, message in exc.errors.items()
            )
            raise CommandError(f"cannot create pool {name!r}: {problems}") from exc
        self.stdout.write(
            f"Created pool {pool.name} (id {pool.id}): mode {pool.mode}, adapter {pool.adapter}, "
            f"tier {pool.risk_tier}, cash {pool.cash}"
        )
