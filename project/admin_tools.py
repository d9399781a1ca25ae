"""Shared pieces of the admin: a paginator that never counts a whole audit table, read-only
audit admins, exact (index-served) search, links and small HTML renderers.

Everything that turns data into HTML goes through ``format_html`` / ``format_html_join``, so
every value coming from the database or a JSON trace is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

NEW_YORK = ZoneInfo("America/New_York")
EMPTY = "—"

#: Above this many rows a changelist stops counting exactly (see ``NoCountPaginator``).
COUNT_BOUND = 10_000


# --- pagination -------------------------------------------------------------------------------


class ApproximateCount(int):
    """A row count that is not exact: it behaves as an ``int`` for the paginator's arithmetic
    and renders as ``"10000+"`` (at least) or ``"~1234567"`` (an estimate) in the admin's
    "N records" line, so an operator is never shown a made-up exact figure."""

    template: str

    def __new__(cls, value: int, template: str) -> ApproximateCount:
        obj = super().__new__(cls, value)
        obj.template = template
        return obj

    def __str__(self) -> str:
        return self.template.format(int(self))


class NoCountPaginator(Paginator):
    """A paginator whose ``count`` never runs ``SELECT COUNT(*)`` over a whole table.

    Django's changelist counts the filtered queryset on every page view; on a table of a
    million rows that is a full scan each time (DESIGN, "Known pitfalls"). ``count`` here is:

    * an **unfiltered queryset on PostgreSQL**: the planner's estimate ``pg_class.reltuples``
      (kept fresh by autovacuum/ANALYZE; one catalog lookup, no scan), shown as ``~N``. It is
      used only when it is above ``COUNT_BOUND``: a small or never-analysed table (``-1``)
      falls through to the bounded count below, which is then exact and cheap;
    * **otherwise** (a filter or a search, or SQLite): a **bounded count**,
      ``SELECT COUNT(*) FROM (SELECT id … LIMIT COUNT_BOUND + 1)``. It reads at most
      ``COUNT_BOUND + 1`` index entries, is exact below the bound, and above it returns the
      bound shown as ``10000+``.

    The trade-off: past the bound the page links stop at page ``COUNT_BOUND / per_page``
    (200 pages of 50); older rows are reached by narrowing the list with the filters (pool,
    outcome, date…) or a search, which is how an operator reads an audit trail anyway. Pair it
    with ``show_full_result_count = False`` and ``show_facets = ShowFacets.NEVER`` (facets run
    a count per filter choice).
    """

    bound = COUNT_BOUND

    @cached_property
    def count(self) -> int:
        """Exact up to ``bound`` rows, an ``ApproximateCount`` above it; see the class."""
        object_list = self.object_list
        if not isinstance(object_list, QuerySet):
            return len(object_list)
        estimate = self._estimate_unfiltered(object_list)
        if estimate is not None and estimate > self.bound:
            return ApproximateCount(estimate, "~{}")
        bounded = object_list.order_by().values("pk")[: self.bound + 1].count()
        if bounded > self.bound:
            return ApproximateCount(self.bound, "{}+")
        return bounded

    @staticmethod
    def _estimate_unfiltered(queryset: QuerySet) -> int | None:
        """``reltuples`` of the queryset's table on PostgreSQL when nothing narrows the
        queryset (no filter, no slice, no DISTINCT, no set operation), else None. One catalog
        query."""
        query = queryset.query
        connection = connections[queryset.db]
        if (
            connection.vendor != "postgresql"
            or query.where
            or query.distinct
            or query.combinator
            or query.low_mark
            or query.high_mark is not None
        ):
            return None
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [table])
            row = cursor.fetchone()
        if row is None or row[0] is None or row[0] < 0:
            return None
        return int(row[0])


class LargeTableAdminMixin:
    """Changelist settings for the audit tables that grow to millions of rows."""

    paginator = NoCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50


# --- read-only audit admins -------------------------------------------------------------------


class ReadOnlyAdminMixin:
    """No one adds, changes or deletes an audit row from the admin, superusers included.

    The change view still shows the record (read-only, as Django renders it for a user with
    only the view permission); a POST to it, the add view and the delete view answer 403.
    """

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ReadOnlyAuditAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Base admin of an audit table."""

    list_per_page = 50


class ReadOnlyTabularInline(ReadOnlyAdminMixin, admin.TabularInline):
    """A tabular inline that only shows rows."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True


# --- search -----------------------------------------------------------------------------------


class ExactSearchMixin:
    """Search by exact values, so each term is an index lookup instead of a ``LIKE '%x%'``
    scan of a million rows.

    Each whitespace-separated term is matched against ``exact_search_fields`` as typed and
    against ``upper_search_fields`` upper-cased (entity symbols are stored upper-case, so
    ``aapl`` finds ``AAPL``); a row matches when any term matches any field.
    """

    exact_search_fields: Sequence[str] = ()
    upper_search_fields: Sequence[str] = ()

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return (*self.upper_search_fields, *self.exact_search_fields)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        terms = search_term.split()
        if not terms:
            return queryset, False
        condition = Q()
        for term in terms:
            for name in self.exact_search_fields:
                condition |= Q(**{name: term})
            for name in self.upper_search_fields:
                condition |= Q(**{name: term.upper()})
        return queryset.filter(condition), False


# --- links and formatting ---------------------------------------------------------------------


def change_url(obj: Model) -> str:
    """The admin change page of ``obj``."""
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])


def admin_link(obj: Model | None, label: object = None) -> str:
    """A link to ``obj``'s change page, or a dash when there is no object."""
    if obj is None:
        return EMPTY
    return format_html('<a href="{}">{}</a>', change_url(obj), obj if label is None else label)


def changelist_link(model: type[Model], filters: Mapping[str, object], label: object) -> str:
    """A link to ``model``'s changelist narrowed by ``filters`` (lookup → value)."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    query = urlencode({key: str(value) for key, value in filters.items()})
    return format_html('<a href="{}?{}">{}</a>', url, query, label)


def format_eastern(value: datetime | None) -> str:
    """A datetime in New York time with its zone abbreviation (``2026-11-18 11:00:00 EST``)."""
    if value is None:
        return EMPTY
    return value.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M:%S %Z")


def format_money(value: Decimal | None) -> str:
    """Currency with thousands separators and cents (``100,000.00``)."""
    if value is None:
        return EMPTY
    return f"{value:,.2f}"


def format_fraction(value: Decimal | None) -> str:
    """A fraction as a percentage (0.0869 → ``8.69 %``)."""
    if value is None:
        return EMPTY
    return f"{value * 100:,.2f} %"


def plain(value: Any) -> str:
    """A trace value as short text: a dash for nothing, yes/no, lists joined by commas."""
    if value is None or value == "":
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def pretty_json(value: Any) -> SafeString:
    """Indented JSON in a ``<pre>`` block (escaped)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    return format_html('<pre class="admin-json">{}</pre>', text)


def passed_mark(passed: Any) -> SafeString:
    """✓ for a passed check, ✗ for a failed one (coloured, with a text alternative)."""
    if passed:
        return format_html('<span style="color:#1a7f37" title="passed">{}</span>', "✓")
    return format_html('<span style="color:#cf222e" title="failed">{}</span>', "✗")


def html_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "Nothing recorded"
) -> SafeString:
    """An HTML table; cells that are already safe (links, marks) are kept, the rest escaped."""
    rows = list(rows)
    if not rows:
        return format_html("<p>{}</p>", empty)
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html(
        '<table class="admin-trace"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        head,
        body,
    )


def key_value_table(items: Iterable[tuple[str, Any]]) -> SafeString:
    """A two-column table of labelled values."""
    rows = [(label, plain(value)) for label, value in items]
    if not rows:
        return mark_safe(EMPTY)
    body = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    return format_html('<table class="admin-trace"><tbody>{}</tbody></table>', body)


def check_rows(checks: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows (#, check, ✓/✗, observed, limit, reason, detail) of a list of check dicts, as the
    decision trace and the order risk evaluation store them."""
    rows = []
    for position, check in enumerate(checks, start=1):
        if not isinstance(check, Mapping):
            rows.append((position, plain(check), EMPTY, EMPTY, EMPTY, EMPTY, EMPTY))
            continue
        rows.append(
            (
                position,
                plain(check.get("check")),
                passed_mark(check.get("passed")),
                plain(check.get("observed")),
                plain(check.get("limit")),
                plain(check.get("reason")),
                plain(check.get("detail")),
            )
        )
    return rows


CHECK_HEADERS = ("#", "check", "passed", "observed", "limit", "reason", "detail")


def render_checks(checks: Any) -> SafeString:
    """The checks of a trace or a risk evaluation as a table, in their stored order."""
    if not isinstance(checks, list):
        return format_html("<p>{}</p>", "No checks recorded")
    return html_table(CHECK_HEADERS, check_rows(checks), empty="No checks recorded")
