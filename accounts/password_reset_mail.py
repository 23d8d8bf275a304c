"""The password-reset mail, sent by a worker: the reset page does the same for every address, at once.

allauth sends the mail from inside the page's request, and only when a local person has the address:
the mail server's round trip (or its error, a 500) told who has a local account. The page's form
(``QueuedResetPasswordForm``, ACCOUNT_FORMS) instead queues ``send_password_reset_mail``
(workers.tasks) with the address asked for and when, whoever has it, and answers. The worker looks
the address up as the page would (an active person, their address in any case), skips a person who
signs in through an identity provider (``accounts.adapters.send_password_reset_mail``'s rule), makes
the link then (allauth's token generator, the portal's public URL) and mails it to the address stored
on the person. Nothing of the token or link passes through the broker: only the address asked for.
With the broker unreachable, the page sends the mail itself (nothing would find it again later).

A send that fails (the mail server down) is tried again, backing off, at most ``RETRIES`` times and
never once the link's lifetime (``PASSWORD_RESET_TIMEOUT``) has passed since it was asked: a reset
mail arriving hours later is no help, and a surprise. Several local people may share an address: the
retry carries the ids of those already mailed (``ResetMailOutcome.mailed``) and mails only the others,
so nobody gets a second live link; the page still queues one message, the same for every address.
The logs name the person's id, never the link, the token or the address.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from allauth.account import app_settings as account_settings
from allauth.account.adapter import get_adapter
from allauth.account.forms import ResetPasswordForm, default_token_generator
from allauth.account.internal.userkit import filter_users_by_email
from allauth.account.utils import user_pk_to_url_str, user_username
from django.conf import settings
from django.http import HttpRequest

from accounts.adapters import portal_site, signs_in_through_an_idp
from core.dispatch import task_send

logger = logging.getLogger(__name__)

TASK = "send_password_reset_mail"
TEMPLATE = "account/email/password_reset_key"
RETRIES = 5
# The web's and the worker's clocks may differ a little: a time asked this far ahead is still taken.
_CLOCK_SKEW_SECONDS = 60
_EMAIL_CHARS = 254  # RFC 5321's longest path: a longer one names nobody Passport mails


_MAILED_IDS = 1000  # more ids than anyone shares an address with: a forged message, taken as none


@dataclass(frozen=True)
class ResetMailOutcome:
    sent: int
    retry_in: int | None = None
    # The ids of the people mailed by this try and those before it (carried into the retry).
    mailed: tuple[int, ...] = ()


def _mailed_ids(value: Any) -> frozenset[int]:
    """The ids already mailed, as a retry's message carries them; anything else is taken as none."""
    if not isinstance(value, list | tuple) or len(value) > _MAILED_IDS:
        return frozenset()
    if not all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return frozenset()
    return frozenset(value)


class QueuedResetPasswordForm(ResetPasswordForm):
    """allauth's reset form, whose save queues the mail for every address alike (the module's docstring)."""

    def save(self, request: HttpRequest, **kwargs: Any) -> str:
        if account_settings.PASSWORD_RESET_BY_CODE_ENABLED:  # a code lives in the asker's session: allauth's own
            return str(super().save(request, **kwargs))
        email = str(self.cleaned_data["email"])
        password_reset_mail_queue(email=email)  # now: the page writes nothing a worker must wait for
        return email


def password_reset_mail_queue(*, email: str) -> None:
    """Hand the reset mail for this address to the workers; never raises, never waits on a mail server.

    With the broker unreachable the mail is sent from this process instead (as notifications are:
    nothing would find it again); what fails there is logged, and the page answers as always."""
    asked_at = int(time.time())
    try:
        task_send(TASK, email, asked_at)
        return
    except Exception as exc:
        logger.warning("a password reset mail could not be queued (%s): sent from the page", type(exc).__name__)
    try:
        password_reset_mail_send(email=email, asked_at=asked_at, attempt=RETRIES)
    except Exception:
        logger.exception("a password reset mail could not be sent from the page")


def _context(person: Any) -> dict[str, Any]:
    """What allauth's reset mail says, the link made now (its lifetime starts here)."""
    uid = user_pk_to_url_str(person)
    token = default_token_generator.make_token(person)
    context = {
        "user": person,
        "email": person.email,
        "password_reset_url": get_adapter().get_reset_password_from_key_url(f"{uid}-{token}"),
        "uid": uid,
        "key": token,
        "request": None,
        "current_site": portal_site(),
    }
    if account_settings.LoginMethod.USERNAME in account_settings.LOGIN_METHODS:
        context["username"] = user_username(person)
    return context


def password_reset_mail_send(*, email: str, asked_at: int, attempt: int = 0, mailed: Any = ()) -> ResetMailOutcome:
    """Send the reset mail for an address now (the worker's task): ``asked_at``, when the page was
    asked (Unix seconds); ``attempt``, how many tries came before; ``mailed``, the ids those tries
    mailed (skipped now). Whoever reaches the broker can write such a message: it mails only whom
    the page would have, each at their own stored address, at most once per task."""
    lifetime = int(settings.PASSWORD_RESET_TIMEOUT)
    age = int(time.time()) - int(asked_at)
    if not -_CLOCK_SKEW_SECONDS <= age <= lifetime:
        logger.warning("a password reset mail is not sent: asked %d s ago, outside its link's lifetime", age)
        return ResetMailOutcome(sent=0)
    if not isinstance(email, str) or not email or len(email) > _EMAIL_CHARS:
        return ResetMailOutcome(sent=0)
    people = filter_users_by_email(email.lower(), is_active=True, prefer_verified=True, for_login=True)
    done = _mailed_ids(mailed)
    now_mailed: list[int] = []
    for person in people:
        if person.pk in done:
            continue
        if not person.email or signs_in_through_an_idp(person):
            logger.info("no password reset mail for user %s: they sign in through their identity provider", person.pk)
            continue
        try:
            get_adapter().render_mail(TEMPLATE, person.email, _context(person)).send()
        except Exception as exc:
            if attempt >= RETRIES or age >= lifetime:
                logger.error(
                    "the password reset mail of user %s was given up after %d tries (%s)",
                    person.pk,
                    attempt + 1,
                    type(exc).__name__,
                )
                continue
            retry_in = min(30 * 2**attempt, max(lifetime - age, 1))
            logger.warning(
                "the password reset mail of user %s was not sent (%s): tried again in %d s",
                person.pk,
                type(exc).__name__,
                retry_in,
            )
            return ResetMailOutcome(sent=len(now_mailed), retry_in=retry_in, mailed=(*sorted(done), *now_mailed))
        now_mailed.append(person.pk)
    return ResetMailOutcome(sent=len(now_mailed), mailed=(*sorted(done), *now_mailed))
