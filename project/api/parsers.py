"""A JSON parser that refuses a body larger than ``API_MAX_BODY_BYTES`` before reading it."""

from __future__ import annotations

import io

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.parsers import JSONParser


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class BoundedJSONParser(JSONParser):
    """``JSONParser`` (strict: NaN and Infinity are refused) with a size limit.

    The declared length is checked first; a body without one is read up to one byte past the
    limit, so a client that lies about its length cannot make the server buffer more.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        too_large = f"The body is larger than {limit} bytes."
        try:
            if declared and int(declared) > limit:
                raise PayloadTooLarge(too_large)
        except ValueError:
            pass
        if stream is not None:
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise PayloadTooLarge(too_large)
            stream = io.BytesIO(body)
        return super().parse(stream, media_type, parser_context)
