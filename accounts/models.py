from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models, transaction
from django.utils import timezone

from accounts.account_identity import identity_change_errors, role_change_awaited, role_change_record
from accounts.destinations import DestinationListFormField, validate_forward_destinations
from accounts.email_keys import email_key
from accounts.portal_roles import is_portal_role
from accounts.ports import PortListFormField, allowed_forward_ports, validate_forward_ports
from accounts.saml.name_ids import name_id_key
from core.destinations import valid_destinations
from core.text import unsafe_text_message, visible


class User(AbstractUser):
    class IdentityStore(models.TextChoices):
        CUSTOMER = "customer", "Customer identity"
        INTERNAL = "internal", "Internal (support engineers)"

    identity_store = models.CharField(max_length=16, choices=IdentityStore.choices, default=IdentityStore.CUSTOMER)
    # Auditors read the Logbook of every account; they need no membership for it.
    is_auditor = models.BooleanField(default=False)
    # The per-person opt-out of Passport's emails (approval needed, decisions, failures, expiry).
    email_notifications = models.BooleanField(default=True)
    # Which users are one person (accounts.permissions.same_person): ``email_key(email)``, kept by
    # save(); "" without an email, which makes nobody the same person.
    email_key = models.CharField(max_length=64, blank=True, default="", editable=False)

    # True only while check_password() runs (see there).
    _rehashing_password = False

    class Meta:
        db_table = "accounts_user"
        indexes = [models.Index(fields=["email_key"], name="accounts_user_email_key")]

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Every save that writes the email writes its key too (create_user, the admin's form, SAML
        sign-in's ``update_fields``): the key is derived data, never set by anyone."""
        update_fields = kwargs.get("update_fields")
        if update_fields is None or "email" in update_fields:
            self.email_key = email_key(self.email)
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "email_key"}
        super().save(*args, **kwargs)

    def check_password(self, raw_password: str) -> bool:
        # Django re-hashes a correct password with today's hasher and saves it from inside this
        # call: the same password, not a change of it (accounts.signals tells the two apart by this).
        self._rehashing_password = True
        try:
            return super().check_password(raw_password)
        finally:
            self._rehashing_password = False

    async def acheck_password(self, raw_password: str) -> bool:
        self._rehashing_password = True
        try:
            return await super().acheck_password(raw_password)
        finally:
            self._rehashing_password = False

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


class PortListField(models.JSONField):
    """A JSON list of ports, edited in forms as comma-separated numbers (``accounts.ports``)."""

    def formfield(self, form_class: Any = None, choices_form_class: Any = None, **kwargs: Any) -> Any:
        return super().formfield(form_class=form_class or PortListFormField, **kwargs)


class DestinationListField(models.JSONField):
    """A JSON list of ``host:port`` strings, edited in forms one per line (``accounts.destinations``)."""

    def formfield(self, form_class: Any = None, choices_form_class: Any = None, **kwargs: Any) -> Any:
        return super().formfield(form_class=form_class or DestinationListFormField, **kwargs)


class AwsAccount(models.Model):
    account_id = models.CharField(max_length=12, unique=True, validators=[account_id_validator])
    name = models.CharField(max_length=100)
    regions = models.JSONField(default=list, help_text="Regions whose instances Passport manages.")
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
        help_text="A shell session starts only when an approver of this account has joined it as observer, and "
        "pauses when the last observer leaves.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    inventory_synced_at = models.DateTimeField(null=True, blank=True)

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
            errors = identity_change_errors(self)
            if self.role_arn.split(":")[4:5] != [self.account_id]:
                errors.setdefault("role_arn", "The role must be in this account.")
            if errors:
                raise ValidationError(errors)
            role_change = role_change_awaited(self)
        if role_change is None:
            super().save(*args, **kwargs)
            return
        actor = getattr(self, "changed_by", None)
        with transaction.atomic():
            super().save(*args, **kwargs)
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
        for field, message in identity_change_errors(self).items():
            errors.setdefault(field, message)
        # Shown on every page, mail and export beside instance ids: nothing that hides or reorders text.
        unsafe = unsafe_text_message("The name", self.name or "")
        if unsafe:
            errors["name"] = unsafe
        if errors:
            raise ValidationError(errors)

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


class ApiToken(models.Model):
    """A bearer token for the CLI and scripts. Only its SHA-256 is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{visible(self.name)} ({self.user})"


class DeviceAuthorization(models.Model):
    """A pending `passport auth login`: the CLI holds the device code, the person confirms the user code.

    Only SHA-256 hashes of both codes are stored; once confirmed, the first poll with the
    device code mints one ApiToken and marks this row used.
    """

    device_code_hash = models.CharField(max_length=64, unique=True)
    user_code = models.CharField(max_length=9, unique=True)  # ABCD-EFGH: short-lived, shown on two screens
    client_name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # When the browser session that confirmed the code ends (accounts.session_lifetime): the
    # token it signs in lives no longer than that session would.
    session_ends_at = models.DateTimeField(null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)
    # The CLI's last poll while the code was pending: one sooner than the interval is told slow_down.
    last_polled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"device authorization {self.user_code}"


class NotificationReceipt(models.Model):
    """One notification of one kind about one request: claimed by a sender, then sent.

    The claim is what keeps a mail to once when two deliveries race (the unique constraints); it
    counts as sent only once the mail server took the mail (``sent_at``). A claim left unsent (the
    server refused it, the sender crashed or was killed) is claimed again after a while by a
    later delivery or the notification sweep (``requests_app.notifications.delivery``).
    """

    kind = models.CharField(max_length=32)
    request_id = models.BigIntegerField()
    # The "ends soon" warning is about one end time: after an extension the new end has its own.
    # None for every other kind.
    expires_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=1)
    # When the mail server accepted it (or it turned out there was nobody to tell); None until then.
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "request_id"],
                condition=models.Q(expires_at__isnull=True),
                name="notification_once_per_request",
            ),
            models.UniqueConstraint(
                fields=["kind", "request_id", "expires_at"],
                condition=models.Q(expires_at__isnull=False),
                name="notification_once_per_request_end",
            ),
        ]
        indexes = [
            models.Index(fields=["claimed_at"], name="notification_unsent", condition=models.Q(sent_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"{self.kind} for request #{self.request_id}"


class ApprovalPolicy(models.Model):
    """How requests on one account are decided. Without one: a single approval, no automatic rules."""

    account = models.OneToOneField(AwsAccount, on_delete=models.CASCADE, related_name="approval_policy")
    approvals_required = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    # Auto-approval: every condition switched on must hold.
    auto_approve = models.BooleanField(default=False)
    auto_approve_identity_store = models.CharField(
        max_length=16, choices=User.IdentityStore.choices, default=User.IdentityStore.INTERNAL, blank=True
    )
    auto_approve_requires_ticket = models.BooleanField(default=True)
    auto_approve_max_duration = models.DurationField(default=timedelta(hours=2))
    auto_approve_admin_rights = models.BooleanField(
        default=False,
        verbose_name="Auto-approve administrator rights",
        help_text="Also approve requests for administrator rights automatically; otherwise an approver decides them.",
    )
    # Deny rules: a request breaking one is refused when it is made, at its approval and before its
    # provisioning (a rule set while it waited), and so is an extension that would.
    deny_without_ticket = models.BooleanField(default=False)
    deny_admin_rights = models.BooleanField(
        default=False,
        verbose_name="Deny administrator rights",
        help_text="Refuse requests for administrator rights (sudo on Linux, Administrators on Windows).",
    )
    deny_over_duration = models.DurationField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return f"approval policy of {self.account}"


class RequestApproval(models.Model):
    """One approver's yes on a request that needs several."""

    request_id = models.BigIntegerField()
    approver = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    approved_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=256, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request_id", "approver"], name="one_approval_per_approver")]

    def __str__(self) -> str:
        return f"request #{self.request_id} approved by {self.approver_id}"


class SamlIdentityProvider(models.Model):
    """An identity provider defined in the admin (those in settings take precedence by slug)."""

    slug = models.SlugField(max_length=40, unique=True, help_text="Names the IdP in Passport's SAML URLs.")
    name = models.CharField(max_length=100, help_text='Shown on the button: "Sign in with <name>".')
    identity_store = models.CharField(max_length=16, choices=User.IdentityStore.choices)
    entity_id = models.CharField(max_length=500)
    sso_url = models.URLField(max_length=500, verbose_name="SSO URL")
    slo_url = models.URLField(max_length=500, blank=True, verbose_name="SLO URL")
    x509cert = models.TextField(verbose_name="X.509 certificate", help_text="The IdP's signing certificate (PEM).")
    allow_idp_initiated = models.BooleanField(
        default=False, help_text="Accept responses Passport did not ask for (IdP-initiated sign-in)."
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        verbose_name = "SAML identity provider"

    def __str__(self) -> str:
        return f"{self.name} ({self.identity_store})"

    def clean(self) -> None:
        from django.conf import settings

        if settings.PRODUCTION:
            insecure = [name for name in ("sso_url", "slo_url") if getattr(self, name).startswith("http://")]
            if insecure:
                raise ValidationError(dict.fromkeys(insecure, "Production accepts only https:// identity providers."))


class SamlIdentity(models.Model):
    """Links a person to the NameID one identity store knows them by. Email never links.

    The link is found by ``name_id_key`` (accounts.saml.name_ids): an email-like NameID in any
    case or compatibility form finds the same person; ``name_id`` keeps the NameID as first sent.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="saml_identities")
    identity_store = models.CharField(max_length=16, choices=User.IdentityStore.choices)
    name_id = models.CharField(max_length=500)
    # The NameID's Format as the IdP sent it; "" for none, and for links made before it was kept.
    name_id_format = models.CharField(max_length=256, blank=True, default="")
    # ``name_id_key(name_id, name_id_format)``, kept by save(): what a sign-in looks the link up by.
    name_id_key = models.CharField(max_length=64, editable=False)
    idp_slug = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "SAML identities"
        constraints = [
            models.UniqueConstraint(fields=["identity_store", "name_id_key"], name="saml_identity_unique_store_key")
        ]

    def __str__(self) -> str:
        # The IdP's NameID, on admin pages and in the admin trail: its hidden characters as escapes.
        return f"{self.identity_store}:{visible(self.name_id)} -> {self.user_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """The key is derived from the NameID and its Format at every save that writes either."""
        update_fields = kwargs.get("update_fields")
        if update_fields is None or {"name_id", "name_id_format"} & set(update_fields):
            self.name_id_key = name_id_key(self.name_id, self.name_id_format)
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "name_id_key"}
        super().save(*args, **kwargs)


class SamlAssertionUse(models.Model):
    """An assertion that was accepted once; its row refuses a replay until it expires.

    It also carries the checked result from the ACS POST to the finishing GET (where the
    session cookie is sent): `handoff_hash` is the SHA-256 of the one-time cookie value.
    """

    idp_slug = models.CharField(max_length=40)
    assertion_id = models.CharField(max_length=256)
    expires_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    handoff_hash = models.CharField(max_length=64, unique=True)
    payload = models.JSONField(default=dict)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["idp_slug", "assertion_id"], name="saml_assertion_used_once")]
        indexes = [models.Index(fields=["expires_at"], name="saml_assertion_expiry")]

    def __str__(self) -> str:
        return f"assertion {self.assertion_id} from {self.idp_slug}"
