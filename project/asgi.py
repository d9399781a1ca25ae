"""The ASGI application, for an ASGI server; it refuses the development SECRET_KEY."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_asgi_application()

from project.ops.secret import refuse_development_secret_key  # noqa: E402 - needs the settings

refuse_development_secret_key("The web server")
