"""Receivers: local sign-ins go to the Logbook, and the CLI's tokens die with the credentials
that stood behind them; and what accounts announce to the apps above them (which it must not import).

allauth's own signal is used for sign-ins, not Django's: it fires only when a person signs in
through the sign-in page, not on every `login()` (tests' force_login, SAML, which records itself).

The tokens are revoked on the models' signals rather than on the pages', so every path counts:
allauth's password change and reset, the admin's password form, `manage.py changepassword`, a
second factor added or removed on the 2FA pages or deleted in the admin, a person deactivated in
the admin or by SAML. The receivers only decide that it happened and hand over to
accounts.cli_tokens, or announce it (``person_deactivated``, ``person_password_changed``) to the
apps that end the rest.
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_logged_in
from allauth.mfa.models import Authenticator
from django.contrib.auth.signals import user_logged_in as django_user_logged_in
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import Signal, receiver
from django.http import HttpRequest

from accounts import cli_tokens
from accounts.models import AwsAccount, User
from accounts.session_lifetime import session_sign_in_stamp
from audit.services import logbook_append, logbook_batch

# Sent inside the transaction that changed or removed memberships (the admin's inline rows, the
# sync at a SAML sign-in), with ``memberships`` (a list of (person pk, account pk)), ``actor``
# (who changed them; None for the identity provider) and ``via`` ("admin", "saml"): the
# requests app ends the live access of each person who no longer holds the Admin role there.
memberships_changed = Signal()
# Sent inside the transaction that saved a person as inactive (the admin's "Active" box, a
# script, any save), with ``user_id``, ``actor`` (who did it, where known: the admin sets
# ``changed_by`` on the person; else None), ``via`` ("deactivated") and ``newly`` (whether this
# save made them inactive): the requests app ends all their live access and records the
# approvals of theirs that stop counting, the terminal app closes their open terminals. Sent at
# every save of an inactive person; the receivers find nothing left to end after the first.
person_deactivated = Signal()
# Sent inside the transaction that saved a person's new password (set_password(), by any path), with
# ``user_id``: the terminal app closes their open terminals at once. Django signs out every other
# session of theirs at its next page; an open terminal loads none, and its periodic sign-in check
# would see it only seconds later.
person_password_changed = Signal()
# Sent inside the transaction that saved an account whose extra forwarding ports or forwarding
# destinations changed (the admin's form, a script, any save), with ``account_id``: the terminal
# app tells the CLI proxy connections of its active requests, which close the open forwards whose
# target is no longer allowed, and the requests app queues the ending of the sessions the CLI holds
# itself to a port no longer open. (A queryset's update() sends nothing; the periodic checks of
# both find such a change later.)
account_forwarding_changed = Signal()

FORWARDING_FIELDS = ("extra_forward_ports", "forward_destinations")


@receiver(django_user_logged_in, dispatch_uid="passport_session_sign_in_stamp")
def stamp_sign_in(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    # Django's signal, sent by every login(): the session's fixed lifetime starts here.
    if request is not None and hasattr(request, "session"):
        session_sign_in_stamp(session=request.session)


@receiver(user_logged_in, dispatch_uid="passport_logbook_local_sign_in")
def record_local_sign_in(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    methods = request.session.get("account_authentication_methods", [])
    logbook_append(
        action="auth.signed_in",
        actor=user,
        detail={
            "method": "local",
            "identity_store": user.identity_store,
            "mfa": any(entry.get("method") == "mfa" for entry in methods),
        },
    )


@receiver(pre_save, sender=User, dispatch_uid="passport_person_was_active")
def remember_whether_active(sender: Any, instance: User, update_fields: Any = None, **kwargs: Any) -> None:
    # Whether this save deactivates the person (read below); unknown (None) when it does not
    # write is_active at all, as the sign-in's last_login update.
    was_active = None
    if instance.pk is not None and (update_fields is None or "is_active" in update_fields):
        was_active = User.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    instance._was_active = was_active  # type: ignore[attr-defined]


@receiver(post_save, sender=User, dispatch_uid="passport_tokens_revoked_on_person_change")
def revoke_tokens_on_person_change(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    # Set by set_password() until the save that stores it ends (Django's own "password changed",
    # after this signal); None for a hasher upgrade at sign-in, which keeps the same password.
    password_changed = getattr(instance, "_password", None) is not None
    if created or (instance.is_active and not password_changed):
        return
    # One transaction, its Logbook entries appended at its end: the access a deactivation ends
    # locks its request rows before the Logbook's head (requests_app.services.lifecycle).
    with transaction.atomic(), logbook_batch():
        if password_changed:
            cli_tokens.api_tokens_revoke_for_user(
                user_id=instance.pk, actor=None, reason=cli_tokens.RevokeReason.PASSWORD_CHANGED
            )
            person_password_changed.send(sender=User, user_id=instance.pk)
        if not instance.is_active:
            # Tokens of an inactive person are refused anyway; revoking keeps them from waking up
            # with it (and closes the CLI proxy connections they opened).
            cli_tokens.api_tokens_revoke_for_user(
                user_id=instance.pk, actor=None, reason=cli_tokens.RevokeReason.DEACTIVATED
            )
            actor = getattr(instance, "changed_by", None)
            person_deactivated.send(
                sender=User,
                user_id=instance.pk,
                actor=actor if isinstance(actor, User) else None,
                via="deactivated",
                newly=bool(getattr(instance, "_was_active", None)),
            )


@receiver(pre_save, sender=AwsAccount, dispatch_uid="passport_account_forwarding_before")
def remember_forwarding(sender: Any, instance: AwsAccount, update_fields: Any = None, **kwargs: Any) -> None:
    # The ports and destinations as stored before this save (read below); None for a new account
    # or a save that writes neither.
    before = None
    if instance.pk is not None and (update_fields is None or set(FORWARDING_FIELDS) & set(update_fields)):
        before = AwsAccount.objects.filter(pk=instance.pk).values_list(*FORWARDING_FIELDS).first()
    instance._forwarding_before = before  # type: ignore[attr-defined]


@receiver(post_save, sender=AwsAccount, dispatch_uid="passport_account_forwarding_changed")
def announce_forwarding_change(sender: Any, instance: AwsAccount, created: bool, **kwargs: Any) -> None:
    before = getattr(instance, "_forwarding_before", None)
    if created or before is None:
        return
    if tuple(before) != tuple(getattr(instance, field) for field in FORWARDING_FIELDS):
        account_forwarding_changed.send(sender=AwsAccount, account_id=instance.pk)


@receiver(post_save, sender=Authenticator, dispatch_uid="passport_tokens_revoked_on_second_factor_added")
def revoke_tokens_on_second_factor_added(sender: Any, instance: Authenticator, created: bool, **kwargs: Any) -> None:
    # Only a new one: a code used at sign-in saves its authenticator too.
    if created:
        cli_tokens.api_tokens_revoke_for_user(
            user_id=instance.user_id, actor=None, reason=cli_tokens.RevokeReason.SECOND_FACTOR_CHANGED
        )


@receiver(post_delete, sender=Authenticator, dispatch_uid="passport_tokens_revoked_on_second_factor_removed")
def revoke_tokens_on_second_factor_removed(sender: Any, instance: Authenticator, **kwargs: Any) -> None:
    cli_tokens.api_tokens_revoke_for_user(
        user_id=instance.user_id, actor=None, reason=cli_tokens.RevokeReason.SECOND_FACTOR_CHANGED
    )
