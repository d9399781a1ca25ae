"""Browser fixtures of the operator console's end-to-end tests.

The tests drive Debian's Chromium (``/usr/bin/chromium``, or ``CHROMIUM_PATH``) through
Playwright's Python package; no browser is ever downloaded. ``.ci/run`` installs Chromium with
apt when it is missing; where none can be had, every test here is skipped and the reason is
printed in the summary (``-ra``).

The server is the project's WSGI application in a thread on 127.0.0.1 — the full middleware
stack with ``DEBUG`` off, the static files served by WhiteNoise as in production, not by a
test handler. Its database is the test database (the in-memory SQLite connection is shared
with the thread; on PostgreSQL the thread opens its own connections), so each test builds its
data with ``transaction=True``; the database is flushed after each, and the desk puts the risk
tiers of the migrations back (``tests/browser/desk.py``), as ``tests/test_concurrency_pg.py``
does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Where each scenario leaves its screenshots.
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 1000}

#: Every test of this folder uses the database from the server thread too.
BROWSER_DB = pytest.mark.django_db(transaction=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run these tests last (after pytest-django's ordering): the flush after each leaves the
    database without the rows the migrations created (groups, tiers), which the other
    transactional tests read."""
    here = Path(__file__).parent
    browser = [item for item in items if here in Path(str(item.path)).parents]
    if browser:
        items[:] = [item for item in items if item not in browser] + browser


def chromium_path() -> str | None:
    """The Chromium to drive: ``CHROMIUM_PATH``, else Debian's, else one on the PATH."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no Chromium: install Debian's chromium (apt-get install chromium; .ci/run does) "
            "or set CHROMIUM_PATH"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -r requirements.txt)")
    return path


@pytest.fixture(scope="session")
def browser_context(chromium: str) -> Iterator[object]:
    """One headless Chromium with a fresh profile for the session's scenarios."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="console-chromium-")
    # Playwright's sync API keeps an event loop in this thread, which Django takes for an async
    # context and refuses the ORM in; the tests' own database calls are synchronous.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=VIEWPORT,
                timezone_id="America/New_York",
                locale="en-US",
            )
        except Exception as exc:  # a Chromium that cannot start here: say why, then skip
            shutil.rmtree(profile, ignore_errors=True)
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
            pytest.skip(f"Chromium at {chromium} could not start: {exc}")
        context.set_default_timeout(15_000)
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def console_server(django_db_setup, django_db_blocker) -> Iterator[str]:
    """The project's WSGI application served from a thread on 127.0.0.1; yields its URL."""
    from django.core.wsgi import get_wsgi_application
    from django.db import connections
    from django.test.testcases import LiveServerThread

    with django_db_blocker.unblock():
        shared = {
            conn.alias: conn
            for conn in connections.all()
            if conn.vendor == "sqlite" and conn.is_in_memory_db()
        }
        for conn in shared.values():
            conn.inc_thread_sharing()
        # The thread hands the application Django's test handler; the production one (with
        # WhiteNoise in its middleware) is served instead.
        thread = LiveServerThread(
            "127.0.0.1", lambda _handler: get_wsgi_application(), connections_override=shared
        )
        thread.daemon = True
        thread.start()
        thread.is_ready.wait()
        if thread.error:
            raise thread.error
        try:
            yield f"http://127.0.0.1:{thread.port}"
        finally:
            thread.terminate()
            wait_for_request_threads()
            for conn in shared.values():
                conn.dec_thread_sharing()


def wait_for_request_threads(timeout: float = 5.0) -> None:
    """Wait for the server's last request threads to end: each closes its database
    connections when it does, and PostgreSQL drops the test database only once none is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any("process_request_thread" in t.name for t in threading.enumerate()):
            return
        time.sleep(0.05)


@pytest.fixture
def page(console_server, browser_context, settings) -> Iterator[object]:
    """A fresh page, logged out, light theme; the test's screenshots go to ``SCREENSHOTS``.

    The server comes first, so the browser (and its keep-alive connections) closes before the
    server stops sharing the database connection."""
    assert settings.DEBUG is False
    browser_context.clear_cookies()
    tab = browser_context.new_page()
    tab.emulate_media(color_scheme="light")
    yield tab
    tab.close()


def shoot(page, name: str) -> Path:
    """A full-page screenshot ``var/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def shoot_both_themes(page, name: str) -> None:
    """The page in the light theme (``<name>-light.png``) and the dark one (``-dark``)."""
    page.emulate_media(color_scheme="light")
    shoot(page, f"{name}-light")
    page.emulate_media(color_scheme="dark")
    shoot(page, f"{name}-dark")
    page.emulate_media(color_scheme="light")
