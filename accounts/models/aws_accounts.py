"""AWS accounts and people's roles on them (memberships)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction

from accounts.account_identity import (
    StoredIdentity,
    identity_change_errors,
    role_change_awaited,
    role_change_record,
)
from accounts.destinations import DestinationListFormField, validate_forward_destinations
from accounts.models.people import User
from accounts.models.trailed import TrailedQuerySet
from accounts.portal_roles import is_portal_role
from accounts.ports import PortListFormField, allowed_forward_ports, validate_forward_ports
from accounts.regions import RegionListFormField, validate_regions
from core.destinations import valid_destinations
from core.text import unsafe_text_message

# Each pattern ends in \Z, not $: RegexValidator searches, and Python's $ also matches before a final
# newline, so "...\n" passed and was stored. ASCII classes, not \d and \w: those take any script's
# digits and letters (Arabic-Indic digits, a Cyrillic a), which IAM names never hold.
account_id_validator = RegexValidator(r"^[0-9]{12}\Z", "An AWS account id is exactly 12 digits.")


role_arn_validator = RegexValidator(
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}\Z",
    "Enter an IAM role ARN (arn:aws:iam::<account>:role/<name>).",
)


principal_arn_validator = RegexValidator(
    r"^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9_+=,.@/-]{1,512}\Z", "Enter an IAM principal ARN."
)


MODERATED_DIRECT_MESSAGE = (
    "Moderated sessions need recorded CLI sessions: a direct CLI session does not pass the portal, so no approver "
    "could watch it. Record the CLI sessions through the portal, or turn Moderated sessions off."
)


class PortListField(models.JSONField):
    """A JSON list of ports, edited in forms as comma-separated numbers (``accounts.ports``)."""

    def formfield(self, form_class: Any = None, choices_form_class: Any = None, **kwargs: Any) -> Any:
        return super().formfield(form_class=form_class or PortListFormField, **kwargs)


class RegionListField(models.JSONField):
    """A JSON list of AWS region names (``accounts.regions``)."""

    def formfield(self, form_class: Any = None, choices_form_class: Any = None, **kwargs: Any) -> Any:
        return super().formfield(form_class=form_class or RegionListFormField, **kwargs)


class DestinationListField(models.JSONField):
    """A JSON list of ``host:port`` strings, edited in forms one per line (``accounts.destinations``)."""

    def formfield(self, form_class: Any = None, choices_form_class: Any = None, **kwargs: Any) -> Any:
        return super().formfield(form_class=form_class or DestinationListFormField, **kwargs)


class AwsAccount(models.Model):
    account_id = models.CharField(max_length=12, unique=True, validators=[account_id_validator])
    name = models.CharField(max_length=100)
    regions = RegionListField(
        default=list,
        validators=[validate_regions],
        help_text='Regions whose instances Passport manages, as a JSON list: e.g. ["eu-west-1", "us-east-1"].',
    )
    role_arn = models.CharField(
        max_length=600, validators=[role_arn_validator], help_text="The role the portal assumes to act in this account."
    )
    extra_forward_ports = PortListField(
        default=list,
        blank=True,
        validators=[validate_forward_ports],
        verbose_name="Extra forwarding ports",
        help_text="Remote ports that sessions may reach on this account's instances besides 22 (SSH) and "
        "3389 (Remote Desktop), separated by commas: e.g. 5432, 8443.",
    )
    forward_destinations = DestinationListField(
        default=list,
        blank=True,
        validators=[validate_forward_destinations],
        verbose_name="Forwarding destinations",
        help_text="Hosts beyond the instance that ssh -L may reach through it, one host:port per line (a DNS name, "
        "an IPv4 address, or an IPv6 address in brackets), e.g. mydb.abc123.eu-west-1.rds.amazonaws.com:3306. "
        "A request reaches those listed when it was made and still listed now. The security groups must also "
        "let the instances reach them.",
    )
    federated_role_arn = models.CharField(
        max_length=600,
        blank=True,
        validators=[role_arn_validator],
        verbose_name="Default role for federated people",
        help_text="The IAM role checked for people who sign in through an identity provider and whose "
        "assertion names no role in this account (SAML attribute https://aws.amazon.com/SAML/Attributes/Role). "
        "Empty: such people cannot ask for access here.",
    )

    class CliSessions(models.TextChoices):
        # The portal is the SSH server the CLI reaches (terminal.proxy): every byte recorded.
        RECORD = "record", "Recorded through the portal"
        # The CLI reaches the data channel itself: the Logbook says such sessions are not recorded.
        DIRECT = "direct", "Direct (not recorded)"

    cli_sessions = models.CharField(
        max_length=8,
        choices=CliSessions.choices,
        default=CliSessions.RECORD,
        verbose_name="CLI sessions",
        help_text="How `passport connect`, ssh, scp, sftp and ssh -L reach this account's instances: through the "
        "portal's recording proxy (shell sessions, commands, file transfers and forwards recorded), or directly "
        "over the Session Manager data channel (not recorded).",
    )
    require_session_join = models.BooleanField(
        default=False,
        verbose_name="Moderated sessions",
        help_text="Nothing reaches this account's instances unless an approver of the account watches: a shell "
        "(the browser terminal; the CLI's ssh, commands and file transfers through the recording proxy) starts once "
        "one has joined it and pauses when the last one leaves. What cannot be watched is refused: port forwards "
        "(passport forward, ssh -L), Remote Desktop, AWS credentials and direct CLI sessions.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    inventory_synced_at = models.DateTimeField(null=True, blank=True)
    # A person's sync (page or API), claimed by a conditional UPDATE: one at a time per account, and
    # a cooldown after it ends (requests_app.services.inventory_sync_by_person). Not the scheduled sync.
    inventory_sync_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    inventory_sync_ended_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Its update() and bulk_create() on the record too (accounts.models.trailed).
    objects = TrailedQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.account_id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuses what ``clean`` refuses of the AWS identity (``accounts.account_identity``), for every
        path a form does not cover (a script, the shell, ``load_demo``): the id fixed once saved, the
        role in it. A new role while grants wait for one to remove their users is saved with its own
        Logbook entry, by ``changed_by`` when the admin set it. (A queryset's update() passes; removal
        still refuses to act in an account other than the one each request was made in:
        ``AccessRequest.aws_account_id``.)"""
        update_fields = kwargs.get("update_fields")
        role_change = None
        if update_fields is None or {"account_id", "role_arn"} & set(update_fields):
            stored = self.stored_identity()
            errors = identity_change_errors(stored=stored, account_id=self.account_id)
            if self.role_arn.split(":")[4:5] != [self.account_id]:
                errors.setdefault("role_arn", "The role must be in this account.")
            if errors:
                raise ValidationError(errors)
            role_change = role_change_awaited(stored=stored, account_pk=self.pk, role_arn=self.role_arn)
        if role_change is None:
            super().save(*args, **kwargs)
            return
        actor = getattr(self, "changed_by", None)
        with transaction.atomic():
            # The new role is on record below: the change trail leaves it out (accounts.change_trail).
            self._changes_recorded_elsewhere = ("role_arn",)
            try:
                super().save(*args, **kwargs)
            finally:
                del self._changes_recorded_elsewhere
            role_change_record(account=self, change=role_change, actor=actor if isinstance(actor, User) else None)

    def clean(self) -> None:
        # A role in another account would let IAM's answer about that account stand for this one,
        # and the portal's role there would file another account's instances under this one.
        errors = {
            field: "The role must be in this account."
            for field in ("role_arn", "federated_role_arn")
            if getattr(self, field) and getattr(self, field).split(":")[4:5] != [self.account_id]
        }
        # The default principal of federated people must not be the portal's own role (accounts.portal_roles).
        portal_roles = [self.role_arn, *AwsAccount.objects.exclude(pk=self.pk).values_list("role_arn", flat=True)]
        if "federated_role_arn" not in errors and is_portal_role(self.federated_role_arn, portal_roles):
            errors["federated_role_arn"] = "This is the role Passport itself assumes; choose a role for people."
        for field, message in identity_change_errors(stored=self.stored_identity(), account_id=self.account_id).items():
            errors.setdefault(field, message)
        # Moderation holds a session until an approver watches it; a direct CLI session never passes the
        # portal, so nothing could hold it (a row saved so before this check: moderation wins at run time,
        # every direct path refuses while the account is moderated).
        if self.require_session_join and self.cli_sessions == self.CliSessions.DIRECT:
            errors["cli_sessions"] = MODERATED_DIRECT_MESSAGE
        # Shown on every page, mail and export beside instance ids: nothing that hides or reorders text.
        unsafe = unsafe_text_message("The name", self.name or "")
        if unsafe:
            errors["name"] = unsafe
        if errors:
            raise ValidationError(errors)

    def stored_identity(self) -> StoredIdentity:
        """The saved row's account id and role (None for an account not yet saved): what a change of
        them is checked against (``accounts.account_identity``)."""
        if self._state.adding or self.pk is None:
            return None
        return type(self).objects.filter(pk=self.pk).values_list("account_id", "role_arn").first()

    @property
    def managed_regions(self) -> tuple[str, ...]:
        """The regions whose instances Passport manages here, as stored (anything but a list of region
        names, written past validation, counts as none)."""
        regions = self.regions if isinstance(self.regions, list) else []
        return tuple(region for region in regions if isinstance(region, str) and region)

    @property
    def forward_ports(self) -> tuple[int, ...]:
        """Every remote port a session may reach here: 22, 3389 and the extra ones, sorted."""
        return allowed_forward_ports(self.extra_forward_ports or [])

    @property
    def forward_destination_list(self) -> tuple[str, ...]:
        """The destinations beyond the instance ``ssh -L`` may reach here, as stored (``core.destinations``)."""
        return valid_destinations(self.forward_destinations)


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

    class Source(models.TextChoices):
        LOCAL = "local", "Granted in Passport"
        SAML = "saml", "From the identity provider's groups"

    # SAML sign-in adds and removes only the memberships it made; an admin's grants stay.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.LOCAL)

    objects = TrailedQuerySet.as_manager()  # as the account's

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "account"], name="membership_unique_user_account")]

    def __str__(self) -> str:
        return f"{self.user} / {self.account.account_id}: {self.role}"

    def clean(self) -> None:
        # IAM is asked about this principal for this account's instances: one of another account
        # would have that account's answer stand for this one (the SAML path refuses it too).
        if self.principal_arn and self.account_id is not None:
            account = AwsAccount.objects.filter(pk=self.account_id).values_list("account_id", flat=True).first()
            if account is not None and self.principal_arn.split(":")[4:5] != [account]:
                raise ValidationError({"principal_arn": "The principal must be in this membership's account."})
        # Nor the portal's own role, which may do everything Passport does (accounts.portal_roles).
        if self.principal_arn and is_portal_role(
            self.principal_arn, AwsAccount.objects.values_list("role_arn", flat=True)
        ):
            message = "This is the role Passport itself assumes; choose the person's own."
            raise ValidationError({"principal_arn": message})
