"""Filters every list of the API shares: times in ISO 8601, read as UTC."""

from __future__ import annotations

from datetime import UTC

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_filters import rest_framework as filters


class UTCIsoDateTimeField(forms.DateTimeField):
    """An ISO 8601 time; one without an offset is read as UTC, like every time of the API.
    The value is handed to the database in UTC, so an offset the database would refuse
    (+20:28) or a time with no UTC equivalent is a 400, never a server error."""

    default_error_messages = {"invalid": "Enter an ISO 8601 time, e.g. 2026-11-18T16:00:00Z."}

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            parsed = parse_datetime(str(value).strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        if timezone.is_naive(parsed):
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class TimeFilter(filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField


def time_range(field: str) -> tuple[TimeFilter, TimeFilter]:
    """``<name>_after`` (inclusive) and ``<name>_before`` (exclusive) on ``field``."""
    return (
        TimeFilter(field_name=field, lookup_expr="gte", label=f"{field} at or after (ISO 8601)"),
        TimeFilter(field_name=field, lookup_expr="lt", label=f"{field} before (ISO 8601)"),
    )
