"""Permission classes of the API: which role may call what (see ``project.api.roles``).

Anonymous requests get 401 (the authentication classes answer before these run); an
authenticated user without the role gets 403.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from project.api.roles import can_ingest, can_operate, can_read_all


class ReadRole(BasePermission):
    """Reading the audit trail and the pools: viewer or operator; no writes."""

    message = "The viewer or operator role is needed to read this."

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS and can_read_all(request.user)


class IngestRole(BasePermission):
    """Ingest resources: ingest or operator may write and read; a viewer may read."""

    message = "The ingest or operator role is needed to write this."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return can_ingest(request.user) or can_read_all(request.user)
        return can_ingest(request.user)


class OperatorRole(BasePermission):
    """Control endpoints: operator only."""

    message = "The operator role is needed to operate a pool."

    def has_permission(self, request, view) -> bool:
        return can_operate(request.user)
