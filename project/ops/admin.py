"""django-q2's schedule admin, with adding and changing schedules kept to superusers.

A schedule names any importable function, with its arguments, for the cluster to run: whoever
can write one can run code on every worker. Staff with django-q2's model permissions keep
viewing (and deleting) schedules; `manage.py setup_schedules` writes the engine's own.
"""

from django.contrib import admin
from django_q import admin as q_admin  # registers django-q2's admin classes first
from django_q.models import Schedule


class SuperuserScheduleAdmin(q_admin.ScheduleAdmin):
    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


admin.site.unregister(Schedule)
admin.site.register(Schedule, SuperuserScheduleAdmin)
