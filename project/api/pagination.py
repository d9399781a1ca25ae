"""Cursor pagination for the audit tables: stable under inserts, no ``COUNT(*)``.

A page answers ``{"next": url|null, "previous": url|null, "results": [...]}``. ``page_size``
(1–500, default 50) sets the page length. The ordering is the table's newest-first index
(``-<time>``, ``-id``), so each page is one index range scan however deep the cursor.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination


class AuditCursorPagination(CursorPagination):
    """A cursor whose position is checked against the ordering field before it reaches the
    query: a forged or corrupt cursor answers 404 like any invalid cursor, never an error in
    the database (which on PostgreSQL would also abort the request's transaction)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = ("-id",)

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
            try:
                if "\x00" in cursor.position:
                    raise ValueError("NUL in cursor")
                field.get_prep_value(field.to_python(cursor.position))
            except (ValidationError, ValueError, TypeError, OverflowError):
                raise NotFound(self.invalid_cursor_message) from None
        return cursor


def cursor_pagination(*ordering: str) -> type[AuditCursorPagination]:
    """A cursor pagination class ordered by ``ordering`` (the last field must be unique)."""
    return type(
        f"CursorBy{'_'.join(f.strip('-') for f in ordering).title().replace('_', '')}",
        (AuditCursorPagination,),
        {"ordering": ordering},
    )
