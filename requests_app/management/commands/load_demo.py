"""Load demo people and AWS accounts from a JSON description, then sync their inventory.

The description lists accounts (id, name, role_arn, regions) and, per person, their IAM
principal ARN in each account. Running it again updates what is there; nothing is lost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import AwsAccount, Membership, User, account_id_validator, principal_arn_validator
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


_ACCOUNT_KEYS = ("id", "name", "role_arn", "regions")

# Opened on every demo account besides 22 and 3389, so the README's `passport forward` has something
# to reach: devcloud forwards a port of any instance to this machine's own (scripts/demo's portal).
DEMO_FORWARD_PORT = 8000


def _manifest_accounts(data: Any) -> list[AwsAccount]:
    """The manifest's accounts as unsaved rows the model's validation passed; CommandError naming the
    entry that is wrong otherwise (a manifest is read from a file anyone may have written)."""
    if not isinstance(data, dict) or not isinstance(data.get("accounts"), list):
        raise CommandError('The manifest must be a JSON object with "accounts": a list of accounts.')
    principals = data.get("principals", {})
    if not isinstance(principals, dict) or not all(
        isinstance(by_account, dict) and all(isinstance(arn, str) for arn in by_account.values())
        for by_account in principals.values()
    ):
        raise CommandError('The manifest\'s "principals" must map each username to {account id: principal ARN}.')
    for username, by_account in principals.items():
        for account_id, arn in by_account.items():
            try:
                # Checked before it is stored: one PostgreSQL cannot take (a NUL) was a DataError traceback.
                principal_arn_validator(arn)
            except ValidationError as exc:
                raise CommandError(
                    f"The principal ARN of {username!r} on {account_id!r} is not valid: {' '.join(exc.messages)}"
                ) from None
    accounts = []
    for number, item in enumerate(data["accounts"], start=1):
        where = f"Account {number} of the manifest"
        if not isinstance(item, dict):
            raise CommandError(f"{where} is not an object with {', '.join(_ACCOUNT_KEYS)}.")
        missing = [key for key in _ACCOUNT_KEYS if key not in item]
        if missing:
            raise CommandError(f"{where} has no {', '.join(missing)}.")
        if not all(isinstance(item[key], str) for key in ("id", "name", "role_arn")):
            raise CommandError(f"{where}: id, name and role_arn must be strings.")
        regions = item["regions"]
        if not isinstance(regions, list) or not all(isinstance(region, str) for region in regions):
            raise CommandError(f"{where} ({item['id']!r}): regions must be a list of region names.")
        try:
            # Checked before it is looked up: an id PostgreSQL cannot take (a NUL) was a DataError traceback.
            account_id_validator(item["id"])
        except ValidationError as exc:
            raise CommandError(f"{where} ({item['id']!r}) is not valid: account_id: {' '.join(exc.messages)}") from None
        account = AwsAccount.objects.filter(account_id=item["id"]).first() or AwsAccount(account_id=item["id"])
        account.name, account.role_arn, account.regions = item["name"], item["role_arn"], regions
        try:
            account.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
            raise CommandError(f"{where} ({item['id']!r}) is not valid: {problems}") from None
        accounts.append(account)
    return accounts


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
        checked = _manifest_accounts(data)
        changed: list[tuple[int, int]] = []
        with transaction.atomic():
            accounts = [
                AwsAccount.objects.update_or_create(
                    account_id=account.account_id,
                    defaults={"name": account.name, "role_arn": account.role_arn, "regions": account.regions},
                )[0]
                for account in checked
            ]
            for account in accounts:
                # Added to what an admin listed, never in place of it.
                if DEMO_FORWARD_PORT not in (account.extra_forward_ports or []):
                    account.extra_forward_ports = [*(account.extra_forward_ports or []), DEMO_FORWARD_PORT]
                    account.save(update_fields=["extra_forward_ports"])
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
