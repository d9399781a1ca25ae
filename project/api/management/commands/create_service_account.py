"""``manage.py create_service_account NAME --role ROLE``: a user in one API role, and its token."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from project.api.roles import ROLES, role_group


class Command(BaseCommand):
    help = (
        "Create (or reuse) a service account in one API role (viewer, operator, ingest) and "
        "print its token. The account has no password: it signs in with the token only. "
        "--rotate replaces an existing token."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="User name of the account, e.g. upstream-recommender")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument("--rotate", action="store_true", help="Issue a new token")

    def handle(self, *args, **options):
        name = options["name"].strip()
        if not name:
            raise CommandError("NAME must not be empty")
        User = get_user_model()
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=name)
            if created:
                user.set_unusable_password()
                user.save(update_fields=["password"])
            group = role_group(options["role"])
            user.groups.add(group)
            if options["rotate"]:
                Token.objects.filter(user=user).delete()
            token, _ = Token.objects.get_or_create(user=user)
        roles = sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        verb = "Created" if created else "Updated"
        self.stderr.write(f"{verb} service account {name!r}, roles: {', '.join(roles)}")
        self.stdout.write(token.key)
