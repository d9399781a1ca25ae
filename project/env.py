"""Typed readers for settings that come from environment variables.

Each helper fails loudly at start-up with a message naming the variable, so a typo in a
deployment never turns into a silently different behaviour.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation


class ImproperlyConfiguredEnv(Exception):
    """Raised when an environment variable holds a value that cannot be used."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfiguredEnv(
        f"{name}={value!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off"
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not an integer") from None
    if minimum is not None and parsed < minimum:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} must be at least {minimum}")
    return parsed


def env_decimal(name: str, default: Decimal) -> Decimal:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ImproperlyConfiguredEnv(f"{name}={value!r} is not a decimal number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name: str, schemes: tuple[str, ...]) -> str | None:
    """Return the URL in ``name`` or None when unset; reject an unknown scheme."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in schemes:
        # The value is not echoed: a URL may carry a password.
        raise ImproperlyConfiguredEnv(
            f"{name} must be a URL with one of the schemes {', '.join(schemes)}"
            f" (got scheme {scheme!r})"
        )
    return value
