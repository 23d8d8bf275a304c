"""Load demo people and AWS accounts from a JSON description, then sync their inventory.

The description lists accounts (id, name, role_arn, regions) and, per person, their IAM
principal ARN in each account. Running it again updates what is there; nothing is lost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import AwsAccount, Membership, User
from accounts.signals import memberships_changed
from audit.services import logbook_append
from requests_app.services import inventory_sync

DEMO_PASSWORD = "passport-demo"  # noqa: S105  # nosec B105 (printed on purpose: demo sign-ins)

# username -> (first name, last name, role on every account, approves, auditor, superuser)
DEMO_PEOPLE: dict[str, tuple[str, str, str, bool, bool, bool]] = {
    "alice": ("Alice", "Requester", Membership.Role.ADMIN, False, False, False),
    "bob": ("Bob", "Approver", Membership.Role.ADMIN, True, False, False),
    "oscar": ("Oscar", "Observer", Membership.Role.OBSERVER, False, False, False),
    "dave": ("Dave", "Auditor", Membership.Role.NONE, False, True, False),
    "admin": ("Site", "Admin", Membership.Role.NONE, False, True, True),
}


class Command(BaseCommand):
    help = "Create the demo people and AWS accounts from a manifest and sync their instances."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--manifest", required=True, type=Path)
        parser.add_argument("--no-sync", action="store_true", help="Skip the inventory sync.")

    def handle(self, *args: Any, manifest: Path, no_sync: bool, **options: Any) -> None:
        if settings.PRODUCTION:
            # It makes a superuser whose password the README prints, and sets people's roles.
            raise CommandError("load_demo is for demo and test databases: PASSPORT_ENV is production.")
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read the manifest {manifest}: {exc}") from exc
        changed: list[tuple[int, int]] = []
        with transaction.atomic():
            accounts = [
                AwsAccount.objects.update_or_create(
                    account_id=item["id"],
                    defaults={"name": item["name"], "role_arn": item["role_arn"], "regions": item["regions"]},
                )[0]
                for item in data["accounts"]
            ]
            for username, (first, last, role, approves, auditor, superuser) in DEMO_PEOPLE.items():
                user, created = User.objects.update_or_create(
                    username=username,
                    defaults={
                        "first_name": first,
                        "last_name": last,
                        "email": f"{username}@demo.passport.test",
                        "is_auditor": auditor,
                        "is_superuser": superuser,
                        "is_staff": superuser,
                    },
                )
                if created:
                    user.set_password(DEMO_PASSWORD)
                    user.save(update_fields=["password"])
                for account in accounts:
                    before = Membership.objects.filter(user=user, account=account).values_list("role", flat=True)
                    if before.exists() and before.first() != role:
                        changed.append((user.pk, account.pk))
                    Membership.objects.update_or_create(
                        user=user,
                        account=account,
                        defaults={
                            "role": role,
                            "can_approve": approves,
                            "principal_arn": data.get("principals", {}).get(username, {}).get(account.account_id, ""),
                        },
                    )
            logbook_append(
                action="demo.loaded",
                actor=None,
                detail={
                    "manifest": str(manifest)[:255],
                    "accounts": [account.account_id for account in accounts],
                    "people": sorted(DEMO_PEOPLE),
                },
            )
            if changed:
                # Whoever is no longer an Admin loses their live access, as after an admin's change.
                memberships_changed.send(sender=Membership, memberships=changed, actor=None, via="load_demo")
        if not no_sync:
            for account in accounts:
                result = inventory_sync(account=account)
                status = "; ".join(result.errors) if result.errors else f"{result.seen} instances"
                self.stdout.write(f"  {account.name}: {status}")
        self.stdout.write(self.style.SUCCESS(f"Demo data loaded: {len(accounts)} accounts, {len(DEMO_PEOPLE)} people."))
