"""The API's addresses: ``/api/v1/`` resources, the OpenAPI schema and its Swagger UI."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("api/v1/", include("project.api.ingest")),
    path("api/v1/", include("project.api.audit")),
    path("api/v1/", include("project.api.control")),
    path("api/v1/", include("project.api.config_versions")),
    path("api/v1/", include("project.api.gate_results")),
    path("api/v1/", include("project.api.reconciliation")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("project.api.health")),
]
