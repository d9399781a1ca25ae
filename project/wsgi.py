"""The WSGI application gunicorn serves (Procfile); it refuses the development SECRET_KEY."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_wsgi_application()

from project.ops.secret import refuse_development_secret_key  # noqa: E402 - needs the settings

refuse_development_secret_key("The web server")
