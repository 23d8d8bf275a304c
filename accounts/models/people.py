"""People: Passport's user model."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.crypto import salted_hmac

from accounts.email_keys import email_key
from accounts.models.trailed import TrailedUserManager


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
    # Part of every session's sign-in hash (``_get_session_auth_hash``), as the password is: made
    # anew when a second factor is added, removed or replaced (accounts.session_stamps), which signs
    # out every session but the one that made the change. "" until the first such change, which
    # leaves the hash Django's own.
    security_stamp = models.CharField(max_length=32, blank=True, default="", db_default="", editable=False)

    # Its update() and bulk_create() on the record too (accounts.models.trailed).
    objects: ClassVar[TrailedUserManager] = TrailedUserManager()

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

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        # Django's HMAC of the password (get_session_auth_hash and the SECRET_KEY_FALLBACKS ones
        # both come here), and of the security stamp once there is one.
        password_hash: str = super()._get_session_auth_hash(secret=secret)  # type: ignore[misc]
        if not self.security_stamp:
            return password_hash
        return salted_hmac(
            "accounts.User.security_stamp", f"{password_hash}:{self.security_stamp}", secret=secret, algorithm="sha256"
        ).hexdigest()

    @property
    def label(self) -> str:
        return self.get_full_name() or self.username
