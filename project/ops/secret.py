"""The guard of the serving processes: no web server or cluster on the development key."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def refuse_development_secret_key(process: str) -> None:
    """Raise ImproperlyConfigured when ``process`` would serve on the development SECRET_KEY.

    project/settings.py falls back to a fixed development key so that `make demo`, the tests
    and every other command run with nothing set; a process that signs sessions and CSRF
    tokens for real users (the web server, a django-q2 cluster) must not, unless DEBUG is on.
    """
    if settings.DEBUG or not settings.SECRET_KEY_IS_DEVELOPMENT:
        return
    raise ImproperlyConfigured(
        f"{process} refuses to start: SECRET_KEY is not set and DEBUG is off. Set SECRET_KEY "
        "(docs/operations.md), or DEBUG=1 on a development machine."
    )
