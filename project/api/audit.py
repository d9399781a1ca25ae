"""API: audit endpoints (see docs/api.md)."""

from __future__ import annotations

urlpatterns: list = []
