"""Requests whose path holds a NUL byte name nothing that exists: 404 before any view runs.

No object has a NUL in its id or name (the form and serializer fields refuse them), and
PostgreSQL refuses text containing one, so a lookup would fail as a server error instead of
answering "not found".
"""

from __future__ import annotations

from django.http import HttpResponseNotFound, JsonResponse


class RefuseNulInPath:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path:
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": "Not found.", "errors": {}}, status=404)
            return HttpResponseNotFound()
        return self.get_response(request)
