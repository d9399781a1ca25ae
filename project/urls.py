from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Decision execution engine"
admin.site.site_title = "Decision execution engine"
admin.site.index_title = "Audit trail and configuration"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("project.api.urls")),
]
