"""Cursor pagination for the audit tables: stable under inserts, no ``COUNT(*)``.

A page answers ``{"next": url|null, "previous": url|null, "results": [...]}``. ``page_size``
(1–500, default 50) sets the page length. The ordering is the table's newest-first index
(``-<time>``, ``-id``), so each page is one index range scan however deep the cursor.
"""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class AuditCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = ("-id",)


def cursor_pagination(*ordering: str) -> type[AuditCursorPagination]:
    """A cursor pagination class ordered by ``ordering`` (the last field must be unique)."""
    return type(
        f"CursorBy{'_'.join(f.strip('-') for f in ordering).title().replace('_', '')}",
        (AuditCursorPagination,),
        {"ordering": ordering},
    )
