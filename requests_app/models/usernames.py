"""Who has which OS username: one person, one name, assigned once (``services.os_usernames``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class OsUsername(models.Model):
    """A person's ``rs-<masked-id>``, the user their grants make on Linux and Windows member servers
    (and the part before the suffix on domain controllers).

    The masked id has 40 bits: two people's can collide. The name is stored once, unique, so the
    second person of a clash is given another (the derivation again with ``attempt`` > 0) and keeps
    it, as the first keeps theirs: neither ever logs in as, or changes, the other's user.

    ``shares_with`` is set only by migration 0026 when two people already had the one name and one
    of them still had access under it: the later keeps it (their users are on hosts), outside the
    unique constraint, and is refused new grants until nothing of theirs is left on a host under it;
    their next request then gives them a name of their own.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="os_username", editable=False
    )
    name = models.CharField(max_length=11, editable=False)
    attempt = models.PositiveSmallIntegerField(default=0, editable=False)
    shares_with = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+", editable=False
    )
    assigned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name"], condition=Q(shares_with__isnull=True), name="os_username_unique"),
        ]

    def __str__(self) -> str:
        return self.name
