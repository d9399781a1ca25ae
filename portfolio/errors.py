"""The error an audited operator action raises when it refuses: nothing was changed."""

from __future__ import annotations

from collections.abc import Mapping


class ActionError(Exception):
    """The action was refused and nothing changed; ``errors`` maps each field (or ``""`` for
    the request as a whole) to its problem, so a form, a command or an API answer can show each
    one where it belongs."""

    def __init__(self, errors: Mapping[str, str] | str) -> None:
        self.errors = {"": errors} if isinstance(errors, str) else dict(errors)
        super().__init__(
            "\n".join(
                f"{key}: {message}" if key else message for key, message in self.errors.items()
            )
        )
