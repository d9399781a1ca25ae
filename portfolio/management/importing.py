"""What the import commands share: their numeric options and the hint about future dates."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An option's whole number of at least 1 (``--max-bytes``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def future_hint(message: str) -> str:
    """The error, with a pointer to ``--allow-future`` when a value was refused as future."""
    if "in the future" in message or "days ahead" in message:
        return message + "\n(--allow-future accepts values dated in the future, for a simulation)"
    return message
