"""The API's three roles, as Django groups (created by migration ``api.0001_roles``).

- ``viewer``: reads everything.
- ``operator``: reads everything, operates pools (halt, resume, clear a breaker, set the tier,
  run a cycle, change the engine configuration) and may ingest.
- ``ingest``: a producer system: writes recommendations and market data and reads what it
  writes (recommendations, entities, market snapshots, performance reports).

A superuser holds every role. A user in no group is authenticated but may do nothing.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

VIEWER = "viewer"
OPERATOR = "operator"
INGEST = "ingest"
ROLES = (VIEWER, OPERATOR, INGEST)


def role_group(role: str):
    """The group of ``role`` (created by migration; recreated if a database flush removed it)."""
    from django.contrib.auth.models import Group

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    group, _ = Group.objects.get_or_create(name=role)
    return group


def roles_of(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """The roles ``user`` holds (memoised on the user object for the request)."""
    if not user or not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_api_roles", None)
    if cached is None:
        if user.is_superuser:
            cached = frozenset(ROLES)
        else:
            cached = frozenset(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._api_roles = cached
    return cached


def can_read_all(user) -> bool:
    return bool(roles_of(user) & {VIEWER, OPERATOR})


def can_ingest(user) -> bool:
    return bool(roles_of(user) & {INGEST, OPERATOR})


def can_operate(user) -> bool:
    return OPERATOR in roles_of(user)
