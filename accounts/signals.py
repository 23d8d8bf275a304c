"""Receivers: local sign-ins, refused ones, and a person's own security changes (a new password, a
second factor added or removed: accounts.security_log) go to the Logbook, and the CLI's tokens die
with the credentials that stood behind them; and what accounts announce to the apps above them
(which it must not import).

allauth's own signal is used for sign-ins, not Django's: it fires only when a person signs in
through the sign-in page, not on every `login()` (tests' force_login, SAML, which records itself).

The tokens are revoked on the models' signals rather than on the pages', so every path counts:
allauth's password change and reset, the admin's password form (a new password, or password-based
authentication disabled), `manage.py changepassword`, a second factor added or removed on the 2FA
pages or deleted in the admin, a person deactivated in the admin or by SAML; and a person's password,
"Active" flag or site admin changed by a queryset's update() sets off the same, for each row it
changed (``person_saved_react``, called by accounts.change_trail_bulk). A second factor's change
signs out the person's other browser sessions too (accounts.session_stamps), and a deactivation all
of them, for good (they stay signed out once the person is active again). A password change is
any change of the stored hash but a hasher upgrade at sign-in. The receivers only decide that it
happened and hand over to accounts.cli_tokens, or announce it (``person_deactivated``,
``person_password_changed``, ``person_site_admin_removed``, ``person_email_changed``) to the apps
that end the rest; and an account's changes that open sessions and access must follow
(``account_forwarding_changed``, ``account_cli_sessions_recorded``, ``account_sessions_moderated``).
What such a save changed of who gets in, and how, is recorded by accounts.change_trail, whose
receivers are connected after these.
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_logged_in
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authentication_failed as mfa_authentication_failed
from django.contrib.auth.signals import user_logged_in as django_user_logged_in
from django.contrib.auth.signals import user_login_failed as django_user_login_failed
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import Signal, receiver
from django.http import HttpRequest

from accounts import cli_tokens
from accounts.change_trail import second_factor_replaced
from accounts.models import ApprovalPolicy, AwsAccount, User
from accounts.security_log import (
    authenticator_added_record,
    authenticator_removed_record,
    password_change_record,
    sign_in_failure_record,
    sign_in_refusal_record,
)
from accounts.session_lifetime import session_sign_in_stamp
from accounts.session_stamps import security_stamp_renew
from audit.services import logbook_append, logbook_batch

# Sent inside the transaction that changed or removed memberships (the admin's inline rows, the
# sync at a SAML sign-in), with ``memberships`` (a list of (person pk, account pk)), ``actor``
# (who changed them; None for the identity provider) and ``via`` ("admin", "saml"): the
# requests app ends the live access of each person who no longer holds the Admin role there.
memberships_changed = Signal()
# Sent inside the transaction that saved a person as inactive (the admin's "Active" box, a script,
# any save, a queryset's update() that deactivated them), with ``user_id``, ``actor`` (who did it,
# where known: the admin sets ``changed_by`` on the person; else None), ``via`` ("deactivated") and
# ``newly`` (whether this save made them inactive): the requests app ends all their live access and
# records the approvals of theirs that stop counting, the terminal app closes their open terminals.
# Sent at every save of an inactive person; the receivers find nothing left to end after the first.
person_deactivated = Signal()
# Sent inside the transaction that saved a person's new password (set_password(), by any path), with
# ``user_id``: the terminal app closes their open terminals at once. Django signs out every other
# session of theirs at its next page; an open terminal loads none, and its periodic sign-in check
# would see it only seconds later.
person_password_changed = Signal()
# Sent inside the transaction that saved an active person who was a site admin (is_superuser) as no
# longer one (the admin's "Superuser status" box, a SAML sign-in without passport:site-admin, any
# save), with ``user_id`` and ``actor`` (as for ``person_deactivated``; None for the identity
# provider): the requests app records the approvals of theirs that stop counting with it. (A
# deactivation records its own, above.)
person_site_admin_removed = Signal()
# Sent inside the transaction that saved a person with another email key (``User.email_key``: a new
# email by the admin's form, a SAML sign-in that brings the identity provider's address, a script,
# any save; a queryset's update() that writes the key), with ``user_id``, ``actor`` (as for
# ``person_deactivated``) and ``via`` ("email_changed"): who is one person changed, and the requests
# app records the approvals that stop counting with it (one by the requester in person, a second one
# by one person), as for a loss of approving.
person_email_changed = Signal()
# Sent inside the transaction that saved an account whose extra forwarding ports or forwarding
# destinations changed (the admin's form, a script, any save), with ``account_id``: the terminal
# app tells the CLI proxy connections of its active requests, which close the open forwards whose
# target is no longer allowed, and the requests app queues the ending of the sessions the CLI holds
# itself to a port no longer open. (A queryset's update() sends nothing; the periodic checks of
# both find such a change later.)
account_forwarding_changed = Signal()
# Sent inside the transaction that saved an account whose CLI sessions became recorded (from
# direct: the admin's form, a script, any save), with ``account_id``: the requests app queues the
# ending of the SSH sessions the CLI holds itself on the direct path, which nothing records. (A
# queryset's update() sends nothing; the periodic run of the same task finds them later.)
account_cli_sessions_recorded = Signal()
# Sent inside the transaction that saved an account's approval policy (the admin's inline form, a
# script, any save), with ``account_id``: the requests app asks the policy, as saved, of the
# account's live requests (a deny rule they now break ends them, a lower length limit shortens
# them). A deletion only loosens (no policy: one approval, no rules) and sends nothing; a
# queryset's update() sends nothing either.
approval_policy_saved = Signal()
# Sent inside the transaction that saved an account whose sessions became moderated ("Moderated
# sessions", ``require_session_join``, turned on: the admin's form, a script, any save), with
# ``account_id``: the terminal app tells every open session of the account (browser terminals and
# the CLI proxy's), which pauses until an approver watches, and the CLI proxy connections of its active
# requests, which close their open forwards; the requests app queues the ending of the Session Manager
# sessions the CLI holds itself and of those started with AWS credentials, which no approver can watch.
# (A queryset's update() sends nothing; each open session reads the setting again every few seconds,
# the proxy's forwards and the periodic run of the same task find such a change later.)
account_sessions_moderated = Signal()
# Sent inside the transaction that saved an account with one or more of its regions taken off (the
# admin's form, a script, any save), with ``account_id`` and ``regions`` (those taken off, sorted):
# the terminal app ends the open browser terminals and CLI proxy connections on its instances there,
# and the requests app queues the ending of the Session Manager sessions the CLI holds itself there.
# (A queryset's update() sends nothing; open sessions read their instance's region every few seconds
# and the periodic run of the same task finds such a change later.)
account_regions_taken_off = Signal()

FORWARDING_FIELDS = ("extra_forward_ports", "forward_destinations")
# What an account's save is compared on (above): its forwarding, its CLI sessions' mode, moderation,
# its regions.
ACCOUNT_WATCHED_FIELDS = (*FORWARDING_FIELDS, "cli_sessions", "require_session_join", "regions")


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


# What a person's save is compared on: whether it deactivates them, changes their password, takes
# site admin away, makes them another person (their email key).
PERSON_WATCHED_FIELDS = ("is_active", "password", "is_superuser", "email_key")


@receiver(pre_save, sender=User, dispatch_uid="passport_person_before")
def remember_person_before(sender: Any, instance: User, update_fields: Any = None, **kwargs: Any) -> None:
    # The watched fields this save writes, as stored before it (read below, one query); a field it
    # does not write at all (the sign-in's last_login update writes none of them) is left out.
    written = [field for field in PERSON_WATCHED_FIELDS if update_fields is None or field in update_fields]
    # A save never moves the security stamp (only accounts.session_stamps does): an instance read
    # before a renewal must not write the old one back, signing in again the sessions it ended.
    stamp_written = update_fields is None or "security_stamp" in update_fields
    before: dict[str, Any] = {}
    if instance.pk is not None and (written or stamp_written):
        stamp = ["security_stamp"] if stamp_written else []
        before = User.objects.filter(pk=instance.pk).values(*written, *stamp).first() or {}
        if "security_stamp" in before:
            instance.security_stamp = before.pop("security_stamp")
    instance._stored_before = before  # type: ignore[attr-defined]


def _password_changed(instance: User, before: dict[str, Any]) -> bool:
    """Whether this save stored another password: set_password() by any path, the admin's "disable
    password-based authentication" (an unusable one), a hash written by a script. Not a hasher
    upgrade at sign-in, which stores the same password re-hashed (``User.check_password``)."""
    stored = before.get("password")
    return stored is not None and stored != instance.password and not instance._rehashing_password


@receiver(post_save, sender=User, dispatch_uid="passport_tokens_revoked_on_person_change")
def revoke_tokens_on_person_change(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    if not created:
        person_saved_react(person=instance, before=getattr(instance, "_stored_before", {}))


def person_saved_react(*, person: User, before: dict[str, Any]) -> None:
    """What a person stored over ``before`` (their ``PERSON_WATCHED_FIELDS`` that the write wrote, as
    stored before it) sets off: a save's, or a queryset update()'s for each row it changed
    (accounts.change_trail_bulk). Call it inside the write's transaction."""
    password_changed = _password_changed(person, before)
    site_admin_removed = bool(before.get("is_superuser")) and not person.is_superuser
    email_changed = "email_key" in before and before["email_key"] != person.email_key
    if person.is_active and not password_changed and not site_admin_removed and not email_changed:
        return
    actor = getattr(person, "changed_by", None)
    actor = actor if isinstance(actor, User) else None
    # One transaction, its Logbook entries appended at its end: the access a deactivation ends
    # locks its request rows before the Logbook's head (requests_app.services.lifecycle).
    with transaction.atomic(), logbook_batch():
        if password_changed:
            password_change_record(person=person)
            cli_tokens.api_tokens_revoke_for_user(
                user_id=person.pk, actor=None, reason=cli_tokens.RevokeReason.PASSWORD_CHANGED
            )
            person_password_changed.send(sender=User, user_id=person.pk)
        if site_admin_removed and person.is_active:
            person_site_admin_removed.send(sender=User, user_id=person.pk, actor=actor)
        if email_changed:
            person_email_changed.send(sender=User, user_id=person.pk, actor=actor, via="email_changed")
        if not person.is_active:
            # Tokens of an inactive person are refused anyway; revoking keeps them from waking up
            # with it (and closes the CLI proxy connections they opened).
            cli_tokens.api_tokens_revoke_for_user(
                user_id=person.pk, actor=None, reason=cli_tokens.RevokeReason.DEACTIVATED
            )
            if before.get("is_active"):
                # Their browser sessions too, for good: Django refuses them only while the person is
                # inactive. None is kept, not even the page's that did it (it may be theirs). The
                # instance in hand gets the new stamp, so that saving it again cannot restore the old.
                person.security_stamp = security_stamp_renew(user_id=person.pk, keep_current=False)
            person_deactivated.send(
                sender=User,
                user_id=person.pk,
                actor=actor,
                via="deactivated",
                newly=bool(before.get("is_active")),
            )


@receiver(pre_save, sender=AwsAccount, dispatch_uid="passport_account_watched_before")
def remember_watched_fields(sender: Any, instance: AwsAccount, update_fields: Any = None, **kwargs: Any) -> None:
    # The watched fields this save writes, as stored before it (read below); None for a new account
    # or a save that writes none of them.
    before = None
    written = [field for field in ACCOUNT_WATCHED_FIELDS if update_fields is None or field in update_fields]
    if instance.pk is not None and written:
        before = AwsAccount.objects.filter(pk=instance.pk).values(*written).first()
    instance._watched_before = before  # type: ignore[attr-defined]


@receiver(post_save, sender=AwsAccount, dispatch_uid="passport_account_changes_announced")
def announce_account_changes(sender: Any, instance: AwsAccount, created: bool, **kwargs: Any) -> None:
    before = getattr(instance, "_watched_before", None)
    if created or before is None:
        return
    changed = {field for field, value in before.items() if value != getattr(instance, field)}
    if changed & set(FORWARDING_FIELDS):
        account_forwarding_changed.send(sender=AwsAccount, account_id=instance.pk)
    if "cli_sessions" in changed and instance.cli_sessions == AwsAccount.CliSessions.RECORD:
        account_cli_sessions_recorded.send(sender=AwsAccount, account_id=instance.pk)
    if "require_session_join" in changed and instance.require_session_join:
        account_sessions_moderated.send(sender=AwsAccount, account_id=instance.pk)
    if "regions" in changed:
        taken_off = sorted(set(_region_names(before["regions"])) - set(instance.managed_regions))
        if taken_off:
            account_regions_taken_off.send(sender=AwsAccount, account_id=instance.pk, regions=taken_off)


def _region_names(stored: Any) -> list[str]:
    """The region names of a stored ``regions`` value (anything but a list of names counts as none,
    as ``AwsAccount.managed_regions`` reads it)."""
    return [region for region in stored if isinstance(region, str) and region] if isinstance(stored, list) else []


@receiver(post_save, sender=ApprovalPolicy, dispatch_uid="passport_approval_policy_saved_announced")
def announce_approval_policy_saved(sender: Any, instance: ApprovalPolicy, raw: bool = False, **kwargs: Any) -> None:
    if not raw:  # a fixture's load has no live requests to weigh
        approval_policy_saved.send(sender=ApprovalPolicy, account_id=instance.account_id)


@receiver(post_save, sender=Authenticator, dispatch_uid="passport_tokens_revoked_on_second_factor_added")
def revoke_tokens_on_second_factor_added(sender: Any, instance: Authenticator, created: bool, **kwargs: Any) -> None:
    # A new one, or one whose secret was replaced in place (removed and another added: its
    # authenticator.changed entry is the change trail's): not a code used at sign-in, which saves
    # its authenticator too (accounts.change_trail.second_factor_replaced).
    if kwargs.get("raw") or not (created or second_factor_replaced(instance)):
        return
    # Its Logbook entries appended at its end, after the person's code and token rows: a CLI poll
    # holds its code's row, then appends cli.token_issued (accounts.cli_services).
    with transaction.atomic(), logbook_batch():
        if created:
            authenticator_added_record(authenticator=instance)
        cli_tokens.api_tokens_revoke_for_user(
            user_id=instance.user_id, actor=None, reason=cli_tokens.RevokeReason.SECOND_FACTOR_CHANGED
        )
        # The sessions signed in before it (with the password alone, when TOTP is new) end too.
        security_stamp_renew(user_id=instance.user_id)


@receiver(post_delete, sender=Authenticator, dispatch_uid="passport_tokens_revoked_on_second_factor_removed")
def revoke_tokens_on_second_factor_removed(sender: Any, instance: Authenticator, **kwargs: Any) -> None:
    with transaction.atomic(), logbook_batch():  # as for one added
        authenticator_removed_record(authenticator=instance)
        cli_tokens.api_tokens_revoke_for_user(
            user_id=instance.user_id, actor=None, reason=cli_tokens.RevokeReason.SECOND_FACTOR_CHANGED
        )
        security_stamp_renew(user_id=instance.user_id)


@receiver(django_user_login_failed, dispatch_uid="passport_logbook_sign_in_refused")
def record_sign_in_refused(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django's signal, sent by authenticate() when no backend accepts: the password is already
    # masked in ``credentials``, and only the login is read.
    sign_in_failure_record(request=request, credentials=credentials)


@receiver(mfa_authentication_failed, dispatch_uid="passport_logbook_second_factor_refused")
def record_second_factor_refused(
    sender: Any, request: HttpRequest | None, user: User, reauthentication: bool = False, **kwargs: Any
) -> None:
    # allauth's signal, sent by the 2FA step's form for a wrong code: the password was right, so the
    # person is named. A refusal by the limit on codes is the form's to record (accounts.mfa_forms).
    if not reauthentication:
        sign_in_refusal_record(request=request, person=user, reason="wrong_code")
