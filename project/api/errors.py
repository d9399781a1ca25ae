"""One error shape for the API, and the audited actions' refusals as 400s.

Every error answers ``{"detail": "...", "errors": {...}}``: ``errors`` maps each field (a list
index for batches, ``"0.confidence"``) to its problems, so a producer can fix exactly what was
refused. An ``ActionError`` from ``portfolio.actions`` becomes a 400 with its field messages.
"""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from portfolio.errors import ActionError


def exception_handler(exc, context):
    if isinstance(exc, ActionError):
        exc = ValidationError({key or "non_field_errors": [msg] for key, msg in exc.errors.items()})
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, ValidationError):
        response.data = {"detail": "Invalid input: nothing was written.", "errors": data}
    elif isinstance(data, dict) and "detail" in data:
        response.data = {"detail": str(data["detail"]), "errors": {}}
    return response


def bad_request(errors: dict, detail: str = "Invalid input: nothing was written.") -> Response:
    return Response({"detail": detail, "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
