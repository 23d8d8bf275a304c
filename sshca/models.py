"""The CA's keys and a record of every certificate it signed.

Private keys are stored only encrypted (see ``sshca.crypto``); public keys and
fingerprints are stored in the clear because they are published.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class CaKey(models.Model):
    """One CA key pair. Per purpose and key type at most one is active and at most one trusted.

    Two trusted keys at once is what lets a rotation happen without lockout: hosts keep
    trusting the previous key while certificates it signed are still valid.

    ``purpose`` keeps two CAs apart: the user CA signs people's certificates (hosts trust
    it in authorized_keys), the host CA signs the portal's host certificates (the CLI
    trusts it in its known_hosts). A key of one purpose never signs for the other.
    """

    class Purpose(models.TextChoices):
        USER = "user", "User CA"
        HOST = "host", "Host CA"

    class KeyType(models.TextChoices):
        ED25519 = "ed25519", "Ed25519"
        RSA = "rsa", "RSA-4096"

    class State(models.TextChoices):
        ACTIVE = "active", "Active (signs)"
        TRUSTED = "trusted", "Trusted (signs only for hosts not yet given the active key)"
        RETIRED = "retired", "Retired"

    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.USER)
    key_type = models.CharField(max_length=16, choices=KeyType.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    public_key = models.TextField(help_text="OpenSSH public key line, e.g. 'ssh-ed25519 AAAA...'.")
    fingerprint = models.CharField(max_length=64, unique=True, help_text="SHA256:<base64>, as ssh-keygen -l shows it.")
    # 12-byte nonce followed by the AES-256-GCM ciphertext (with its tag) of the PKCS#8 DER key.
    private_key_encrypted = models.BinaryField(editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    demoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["purpose", "key_type", "-created_at", "-id"]
        verbose_name = "CA key"
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "key_type"],
                condition=models.Q(state="active"),
                name="sshca_one_active_key_per_purpose_type",
            ),
            models.UniqueConstraint(
                fields=["purpose", "key_type"],
                condition=models.Q(state="trusted"),
                name="sshca_one_trusted_key_per_purpose_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_key_type_display()} {self.get_purpose_display()} {self.fingerprint} ({self.state})"

    def __repr__(self) -> str:
        # Never let a debug print or a log line drag the (encrypted) private key along.
        return f"<CaKey {self.pk} {self.purpose} {self.key_type} {self.state} {self.fingerprint}>"

    @property
    def is_trusted(self) -> bool:
        return self.state in (self.State.ACTIVE, self.State.TRUSTED)


class IssuedCertificate(models.Model):
    """One row per certificate signed. Its primary key is the certificate's serial.

    A database sequence hands out the id, so serials are unique across processes and
    never zero (zero means "no serial" in OpenSSH). Keeping the rows also lets a KRL or
    an investigation find every certificate of a request.
    """

    ca_key = models.ForeignKey(CaKey, on_delete=models.PROTECT, related_name="certificates")
    signature_algorithm = models.CharField(max_length=32)
    # One principal for a user certificate; a host certificate's principals joined by commas.
    principal = models.CharField(max_length=400)
    key_id = models.CharField(max_length=200)
    public_key_fingerprint = models.CharField(max_length=64)
    valid_after = models.DateTimeField()
    valid_before = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    request_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["request_id"], name="sshca_cert_request"),
            models.Index(fields=["ca_key", "valid_before"], name="sshca_cert_ca_validity"),
        ]

    def __str__(self) -> str:
        return f"certificate #{self.pk} for {self.principal}"

    @property
    def serial(self) -> int:
        return self.pk
