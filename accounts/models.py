from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models


class User(AbstractUser):
    class IdentityStore(models.TextChoices):
        CUSTOMER = "customer", "Customer identity"
        INTERNAL = "internal", "Internal (support engineers)"

    identity_store = models.CharField(max_length=16, choices=IdentityStore.choices, default=IdentityStore.CUSTOMER)
    # Auditors read the Logbook of every account; they need no membership for it.
    is_auditor = models.BooleanField(default=False)

    class Meta:
        db_table = "accounts_user"

    @property
    def label(self) -> str:
        return self.get_full_name() or self.username


account_id_validator = RegexValidator(r"^\d{12}$", "An AWS account id is exactly 12 digits.")
role_arn_validator = RegexValidator(
    r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$",
    "Enter an IAM role ARN (arn:aws:iam::<account>:role/<name>).",
)
principal_arn_validator = RegexValidator(
    r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:[\w+=,.@/-]{1,512}$", "Enter an IAM principal ARN."
)


class AwsAccount(models.Model):
    account_id = models.CharField(max_length=12, unique=True, validators=[account_id_validator])
    name = models.CharField(max_length=100)
    regions = models.JSONField(default=list, help_text="Regions whose instances Passport manages.")
    role_arn = models.CharField(
        max_length=600, validators=[role_arn_validator], help_text="The role the portal assumes to act in this account."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    inventory_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.account_id})"


class Membership(models.Model):
    """A person's role on one AWS account. Only Admin may ask for access to instances."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        OBSERVER = "observer", "Observer"
        NONE = "none", "None"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(AwsAccount, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.NONE)
    can_approve = models.BooleanField(default=False)
    principal_arn = models.CharField(max_length=600, blank=True, validators=[principal_arn_validator])

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "account"], name="membership_unique_user_account")]

    def __str__(self) -> str:
        return f"{self.user} / {self.account.account_id}: {self.role}"


class ApiToken(models.Model):
    """A bearer token for the CLI and scripts. Only its SHA-256 is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"
