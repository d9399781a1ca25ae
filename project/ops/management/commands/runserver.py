"""runserver, refusing the development SECRET_KEY when DEBUG is off (as gunicorn does)."""

from django.contrib.staticfiles.management.commands import runserver
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from project.ops.secret import refuse_development_secret_key


class Command(runserver.Command):
    def handle(self, *args, **options):
        try:
            refuse_development_secret_key("runserver")
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        super().handle(*args, **options)
