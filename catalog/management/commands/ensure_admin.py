"""Create the admin user once; print its password the first time only."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create a superuser (ADMIN_USER / ADMIN_PASSWORD from the environment) if missing."

    def handle(self, *args: object, **options: object) -> None:
        username = os.environ.get("ADMIN_USER", "admin")
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(f"admin user '{username}' exists (password unchanged)")
            return
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user = user_model.objects.create_superuser(username=username, email="", password=password)
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(self.style.SUCCESS(f"created admin user '{username}'"))
        if not os.environ.get("ADMIN_PASSWORD"):
            self.stdout.write(self.style.WARNING(f"  password: {password}   (shown once)"))
        self.stdout.write(f"  API token: {token.key}")
