"""Serving: production settings fail closed, static files, the cache table, logs, schedules."""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django_q.models import Schedule

ROOT = Path(__file__).resolve().parent.parent
UTC_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 ")

# The production variables of docs/operations.md, "Production settings".
PRODUCTION = {
    "ALLOWED_HOSTS": "engine.internal",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SECURE_COOKIES": "1",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
}


def _clean_env(**extra: str) -> dict[str, str]:
    """A bare environment: what a service manager gives a process, plus ``extra``."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_documented_production_variables():
    env = _clean_env(SECRET_KEY=secrets.token_urlsafe(50), **PRODUCTION)

    proc = _manage("check", "--deploy", env=env)

    assert proc.returncode == 0, proc.stderr
    issues = set(re.findall(r"\(([\w.]+\.[CEW]\d+)\)", proc.stderr + proc.stdout))
    assert issues == set()
    assert "System check identified no issues" in proc.stdout


def test_check_deploy_flags_the_development_key():
    proc = _manage("check", "--deploy", env=_clean_env(**PRODUCTION))

    assert "security.W009" in proc.stderr


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-c", "import project.wsgi"],
        [sys.executable, "-c", "import project.asgi"],
        [sys.executable, "manage.py", "runserver", "--noreload", "127.0.0.1:0"],
        [sys.executable, "manage.py", "qcluster"],
    ],
    ids=["wsgi", "asgi", "runserver", "qcluster"],
)
def test_serving_process_refuses_to_start_without_secret_key_when_debug_is_off(command):
    proc = subprocess.run(
        command, cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=120
    )

    assert proc.returncode != 0
    assert "refuses to start: SECRET_KEY is not set and DEBUG is off" in proc.stderr


def test_wsgi_starts_with_debug_on_and_no_secret_key():
    proc = subprocess.run(
        [sys.executable, "-c", "import project.wsgi"],
        cwd=ROOT,
        env=_clean_env(DEBUG="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr


def test_admin_css_is_served_by_whitenoise_with_debug_off(client, settings):
    assert settings.DEBUG is False

    response = client.get("/static/admin/css/base.css")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"".join(response.streaming_content)


def test_a_fresh_database_needs_only_migrate_for_the_cache(tmp_path):
    env = _clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    assert _manage("migrate", "--noinput", "-v0", env=env).returncode == 0

    proc = _manage(
        "shell",
        "-v0",
        "-c",
        "from django.core.cache import cache; cache.set('k', 'cached', 60); print(cache.get('k'))",
        env=env,
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cached"


@pytest.fixture
def console_output():
    """What the root logger's console handler (LOGGING in project/settings.py) writes."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_log_lines_start_with_a_utc_timestamp(console_output):
    logging.getLogger("engine.test").warning("halted")

    line = console_output.getvalue()
    assert UTC_LINE.match(line), line
    assert line.rstrip().endswith("WARNING engine.test halted")


def test_a_refused_request_logs_one_line_without_traceback(db, client, console_output):
    staff = User.objects.create_user("clerk", password="pw-clerk-1234", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_pool"))
    client.force_login(staff)

    response = client.get("/admin/auth/user/")

    assert response.status_code == 403
    lines = console_output.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert UTC_LINE.match(lines[0])
    assert "Forbidden (Permission denied): /admin/auth/user/" in lines[0]


def test_only_superusers_add_or_change_schedules(db, client):
    schedule = Schedule.objects.create(name="probe", func="math.floor", args="1")
    staff = User.objects.create_user("operator", password="pw-operator-1234", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="django_q"))
    client.force_login(staff)

    assert client.get(f"/admin/django_q/schedule/{schedule.pk}/change/").status_code == 200
    assert client.get("/admin/django_q/schedule/add/").status_code == 403
    response = client.post(
        f"/admin/django_q/schedule/{schedule.pk}/change/",
        {"name": "probe", "func": "os.system", "args": "'true'", "schedule_type": "O"},
    )
    assert response.status_code == 403
    schedule.refresh_from_db()
    assert schedule.func == "math.floor"

    boss = User.objects.create_superuser("boss", password="pw-boss-1234")
    client.force_login(boss)
    assert client.get("/admin/django_q/schedule/add/").status_code == 200
