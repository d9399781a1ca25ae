"""Shared fixtures: a clock, pools, entities and bars built through the real code paths."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import settings

from tests import factories

# CI explores the same examples on every run, so a red build is reproducible; local runs keep
# hypothesis's random exploration (and its example database) to find new cases.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_report_header(config):
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"database: {engine}; cache: {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}"


def pytest_collection_modifyitems(config, items):
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    if os.environ.get("REQUIRE_POSTGRES"):
        raise pytest.UsageError("REQUIRE_POSTGRES is set but DATABASE_URL is not PostgreSQL")
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (as .ci/run does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clear_cache():
    """Each test starts with an empty cache, as a restarted engine would."""
    from django.core.cache import cache

    yield
    # The database cache is reachable only from tests that use the database.
    with contextlib.suppress(Exception):
        cache.clear()


@pytest.fixture
def source_tiers():
    """The risk tiers the data migration creates, put back: a transactional test
    (``django_db(transaction=True)``) flushes every table after it, data migrations included,
    so the tests after it would find none."""
    import importlib

    from django.apps import apps

    importlib.import_module("portfolio.migrations.0002_risk_tiers").create_tiers(apps, None)


@pytest.fixture
def session_now() -> datetime:
    """Wednesday 2026-11-18, 11:00 New York time: a regular session."""
    return datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


@pytest.fixture
def pool(db, session_now):
    return factories.make_pool(now=session_now)


@pytest.fixture
def money():
    return Decimal
