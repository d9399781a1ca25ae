"""Admin of the configuration versions (``config_versions``): read-only, each version's settings
as tables, what changed from the version its first pool decided with before, and a page
comparing any two versions setting by setting (``portfolio.config_versions``).

Registered when ``decisions.admin`` (whose decision page links each record's version) imports
it; the ConfigVersion model is the portfolio app's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from decisions.models import DecisionRecord
from portfolio.config import TIER_FIELDS
from portfolio.config_versions import Change, diff_documents, previous_version
from portfolio.models import ConfigVersion, RiskTier
from project.admin_tools import (
    EMPTY,
    ReadOnlyAuditAdmin,
    admin_link,
    changelist_link,
    format_eastern,
    html_table,
    plain,
    pretty_json,
)

COMPARE_URL_NAME = "admin:portfolio_configversion_compare"


def version_link(digest: str | None) -> str:
    """A link to the version's admin page, labelled with its first 8 hex digits."""
    if not digest:
        return EMPTY
    url = reverse("admin:portfolio_configversion_change", args=[digest])
    return format_html('<a href="{}" title="{}"><code>{}</code></a>', url, digest, digest[:8])


def compare_url(before: str, after: str) -> str:
    return reverse(COMPARE_URL_NAME) + "?" + urlencode({"from": before, "to": after})


def render_engine_settings(content: dict[str, Any]) -> SafeString:
    engine = content.get("engine") or {}
    rows = [(name, plain(engine[name])) for name in sorted(engine)]
    return html_table(("setting", "value"), rows)


def render_tier_parameters(content: dict[str, Any]) -> SafeString:
    tiers = content.get("tiers") or {}
    order = [t for t in RiskTier.values if t in tiers] + sorted(set(tiers) - set(RiskTier.values))
    names = [n for n in TIER_FIELDS] + sorted(
        {n for t in tiers.values() for n in t} - set(TIER_FIELDS)
    )
    rows = [(name, *(plain(tiers[t].get(name)) for t in order)) for name in names]
    return html_table(("parameter", *order), rows)


def render_changes(changes: list[Change]) -> SafeString:
    if not changes:
        return format_html("<p>{}</p>", "No setting differs.")
    return format_html(
        "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((c.sentence,) for c in changes))
    )


@admin.register(ConfigVersion)
class ConfigVersionAdmin(ReadOnlyAuditAdmin):
    """Every configuration a decision was made with, newest first."""

    list_display = ("short", "created_at_eastern", "first_pool", "decisions_link")
    list_display_links = ("short",)
    list_select_related = ("first_pool",)
    list_filter = ("first_pool",)
    search_fields = ("^digest",)
    search_help_text = "The digest or its first characters"
    ordering = ("-created_at", "digest")
    actions = ["compare_selected"]
    fieldsets = (
        (
            "Version",
            {"fields": ("digest", "created_at_eastern", "first_pool", "decisions_link")},
        ),
        ("Changes from the version before", {"fields": ("changes_from_previous",)}),
        ("Engine settings", {"fields": ("engine_settings",)}),
        ("Risk tier parameters", {"fields": ("tier_parameters",)}),
        ("Canonical document (hashed)", {"classes": ("collapse",), "fields": ("content_json",)}),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    class Media:
        css = {"all": ("portfolio/console.css",)}

    def get_urls(self) -> list[URLPattern]:
        compare = path(
            "compare/",
            self.admin_site.admin_view(self.compare_view),
            name="portfolio_configversion_compare",
        )
        return [compare, *super().get_urls()]

    @admin.display(description="version", ordering="digest")
    def short(self, obj: ConfigVersion) -> SafeString:
        return format_html("<code>{}</code>", obj.short_digest)

    @admin.display(description="created at (New York)", ordering="created_at")
    def created_at_eastern(self, obj: ConfigVersion) -> str:
        return format_eastern(obj.created_at)

    @admin.display(description="decisions")
    def decisions_link(self, obj: ConfigVersion) -> str:
        return changelist_link(DecisionRecord, {"config_version__exact": obj.digest}, "decisions")

    @admin.display(description="changes")
    def changes_from_previous(self, obj: ConfigVersion) -> SafeString:
        """What changed from the version the first pool decided with just before this one
        (two queries), with a link to the full comparison."""
        if obj.first_pool_id is None:
            return format_html("<p>{}</p>", "No pool recorded for this version.")
        before = previous_version(obj, DecisionRecord.objects.filter(pool_id=obj.first_pool_id))
        if before is None:
            return format_html(
                "<p>The first version {} decided with.</p>", admin_link(obj.first_pool)
            )
        return format_html(
            '<p>From {} (the version {} decided with before): <a href="{}">compare</a></p>{}',
            version_link(before.digest),
            admin_link(obj.first_pool),
            compare_url(before.digest, obj.digest),
            render_changes(diff_documents(before.content, obj.content)),
        )

    @admin.display(description="engine settings")
    def engine_settings(self, obj: ConfigVersion) -> SafeString:
        return render_engine_settings(obj.content)

    @admin.display(description="risk tiers")
    def tier_parameters(self, obj: ConfigVersion) -> SafeString:
        return render_tier_parameters(obj.content)

    @admin.display(description="document")
    def content_json(self, obj: ConfigVersion) -> SafeString:
        return pretty_json(obj.content)

    @admin.action(description="Compare the two selected versions")
    def compare_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        chosen = list(queryset.order_by("created_at", "digest").values_list("digest", flat=True))
        if len(chosen) != 2:
            self.message_user(request, "Select exactly two versions to compare.", messages.WARNING)
            return None
        return HttpResponseRedirect(compare_url(*chosen))

    def compare_view(self, request: HttpRequest) -> HttpResponse:
        """Two versions side by side: every setting that differs, as a sentence and a table.
        ``?from=<digest>&to=<digest>`` (a digest's first characters will do when they name
        one version)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        found: dict[str, ConfigVersion | None] = {}
        errors: list[str] = []
        for key in ("from", "to"):
            text = request.GET.get(key, "").strip().lower()
            found[key] = _version_by_prefix(text) if text else None
            if text and found[key] is None:
                errors.append(f"No single version starts with {text!r}.")
        before, after = found["from"], found["to"]
        changes = diff_documents(before.content, after.content) if before and after else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Compare configuration versions",
            "before": before,
            "after": after,
            "before_link": version_link(before.digest) if before else EMPTY,
            "after_link": version_link(after.digest) if after else EMPTY,
            "typed_from": request.GET.get("from", ""),
            "typed_to": request.GET.get("to", ""),
            "errors": errors,
            "changes": changes,
            "changes_table": html_table(
                ("setting", "tier", "from", "to", "change"),
                [
                    (c.setting, c.tier or EMPTY, plain(c.before), plain(c.after), c.sentence)
                    for c in changes or []
                ],
                empty="No setting differs.",
            ),
        }
        return TemplateResponse(request, "admin/portfolio/configversion/compare.html", context)


def _version_by_prefix(text: str) -> ConfigVersion | None:
    """The version whose digest is ``text`` or starts with it (at least 4 hex digits), or None
    when none or several do."""
    if len(text) < 4 or len(text) > 64 or any(c not in "0123456789abcdef" for c in text):
        return None
    rows = list(ConfigVersion.objects.filter(digest__startswith=text)[:2])
    return rows[0] if len(rows) == 1 else None
