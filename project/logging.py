"""Log formatting shared by every process: UTC timestamps with their offset, refusals on one line.

The database, the admin's stored values and the audit exports are in UTC; the logs say so
(``2026-11-18T16:00:00.123+00:00``) whatever TIME_ZONE or the machine's zone is. Django sets
the process's local zone to TIME_ZONE (America/New_York), so ``time.localtime`` is not used.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from gunicorn.glogging import Logger as GunicornBaseLogger


def format_utc(created: float) -> str:
    """ISO 8601 in UTC to the millisecond, with its ``+00:00`` offset, of a ``time.time()``."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class UTCFormatter(logging.Formatter):
    """A Formatter whose ``%(asctime)s`` is :func:`format_utc` of the record's time."""

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's name
        return format_utc(record.created)


class OneLineClientErrors(logging.Filter):
    """Drop the traceback of a refused request (4xx): the status and the path say it all.

    Django logs a PermissionDenied (403), an Http404 or a SuspiciousOperation (400) with the
    exception attached (django.request, django.security.*); for a client's error that is a
    traceback through the framework for every refusal. Server errors (5xx) keep theirs.
    """

    def filter(self, record):
        status = getattr(record, "status_code", None)
        if (status is not None and 400 <= status < 500) or record.name.startswith(
            "django.security."
        ):
            record.exc_info = None
            record.exc_text = None
        return True


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logger in UTC: the error log formatted as the engine's, the access log's %(t)s."""

    def setup(self, cfg):
        super().setup(cfg)
        formatter = UTCFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        for handler in self.error_log.handlers:
            if getattr(handler, "_gunicorn", False):
                handler.setFormatter(formatter)

    def now(self):
        return f"[{format_utc(datetime.now(UTC).timestamp())}]"
