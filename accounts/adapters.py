import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.internal import ratelimit
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.urls import reverse

from accounts.login_limits import login_limit_key, login_limit_keys
from accounts.models import SamlIdentity
from accounts.saml.views import LOGOUT_PENDING_KEY, sp_logout_url
from accounts.security_log import sign_in_failure_record
from audit.services import logbook_append
from core.links import portal_base_url, portal_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortalSite:
    """What allauth's mail templates name as ``current_site``: the portal as people know it."""

    name: str
    domain: str


def portal_site() -> PortalSite:
    """The portal by its public URL (``PASSPORT_BASE_URL``), never by the Host header of the request
    that caused the mail, which the person sending it chooses (any allowed host)."""
    return PortalSite(name="Passport", domain=portal_base_url())


def signs_in_through_an_idp(user: AbstractBaseUser | AnonymousUser) -> bool:
    """A person who came by SAML: their identity provider, not a password of their own choosing,
    says who they are and what they may do. Such a person gets no local password by mail or by
    the set-password page; one would outlive the IdP taking their groups away."""
    return user.pk is not None and SamlIdentity.objects.filter(user_id=user.pk).exists()


_LIMITS_APP = "allauth.account"
_LOGIN_FAILED = "login_failed"


def _login_of(credentials: dict[str, Any]) -> str:
    return str(credentials.get("email") or credentials.get("username") or "")


def _per_person_rates() -> str:
    """``login_failed``'s per-key parts as configured (the same text, so the same counters as the
    first key's), without the per-address part."""
    configured = str(account_settings.RATE_LIMITS.get(_LOGIN_FAILED) or "")
    parts = [part.strip() for part in configured.split(",") if part.strip()]
    return ",".join(part for part in parts if ratelimit.parse_rate(part).per == "key")


class NoSignupAccountAdapter(DefaultAccountAdapter):
    """People come from an admin or the identity provider; nobody signs themselves up."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False

    def get_logout_redirect_url(self, request: HttpRequest) -> str:
        """After signing out someone who came by SAML, tell their IdP too (single logout).

        allauth asks for this URL before it ends the session, which still names the IdP.
        """
        if request.user.is_authenticated:
            slo = sp_logout_url(request)
            if slo is not None:
                url, pending = slo
                request.passport_saml_logout = pending  # type: ignore[attr-defined]
                return url
        return super().get_logout_redirect_url(request)

    def _get_login_attempts_cache_key(self, request: HttpRequest, **credentials: Any) -> str:
        """The count of wrong passwords (``login_failed``'s per-key limit) is the person's, whatever
        the Host header or the form of the login (accounts.login_limits). Only a fallback: the two
        places allauth asks for it are overridden below, as a login may name two people."""
        return login_limit_key(login=_login_of(credentials))

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        """allauth's check before a password is tried, on every count the login is on: allauth takes
        one key, and a login that names two people (a username that reads as another's email) must
        take a guess from each, or it would be a second five guesses at either one's password.

        The first count takes the whole ``login_failed`` limit, the address's part too, as allauth's
        own; the others only its per-person part, so the address is counted once. Refused by any of
        them, the guess is tried against nobody, and what it took from the others is given back.
        A password that works gives back all of it (allauth's ``_rollback_login_failed_rl_usage``).
        A refused guess is ``auth.sign_in_refused`` (``rate_limited``), written once and then counted
        as a wrong password is (accounts.security_log)."""
        first, *others = login_limit_keys(login=_login_of(credentials))
        taken = ratelimit.consume(request, app=_LIMITS_APP, action=_LOGIN_FAILED, key=first)
        usages = [taken] if taken else []
        per_person = {_LOGIN_FAILED: _per_person_rates()}
        for key in others:
            if not taken:
                break
            taken = ratelimit.consume(request, app=_LIMITS_APP, action=_LOGIN_FAILED, config=per_person, key=key)
            if taken:
                usages.append(taken)
        combined = ratelimit.RateLimitUsage(usage=[single for usage in usages for single in usage.usage])
        self._login_failed_rl_usage = combined
        if not taken:
            combined.rollback()
            # Not tried, but on record: the limit hides how many guesses there were, the Logbook must not.
            sign_in_failure_record(request=request, credentials=credentials, reason="rate_limited")
            raise self.validation_error("too_many_login_attempts")

    def _delete_login_attempts_cached_email(self, request: HttpRequest, **credentials: Any) -> None:
        """A password reset by mail clears the counts of the people whose address it is: not of one
        whose username only reads as that address (they proved nothing by it)."""
        for key in login_limit_keys(login=_login_of(credentials), by_username=False):
            ratelimit.clear(request, app=_LIMITS_APP, action=_LOGIN_FAILED, key=key)

    def get_reset_password_from_key_url(self, key: str) -> str:
        """The reset link on the portal's public URL, as in every other mail: allauth's own follows
        the Host header, which the person asking for the reset chooses (any allowed host)."""
        path = reverse("account_reset_password_from_key", kwargs={"uidb36": "UID", "key": "KEY"})
        return portal_url(path.replace("UID-KEY", quote(key)))

    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        """Every allauth mail (a reset, a password or second factor changed) names the portal from
        ``PASSPORT_BASE_URL``: allauth's ``current_site`` without django.contrib.sites is the Host header.
        The subject's prefix is ACCOUNT_EMAIL_SUBJECT_PREFIX, fixed, for the same reason."""
        super().send_mail(template_prefix, email, {**context, "current_site": portal_site()})

    def send_password_reset_mail(self, user: AbstractBaseUser, email: str, context: dict[str, Any]) -> None:
        # The page answers alike either way (allauth's enumeration rule): nobody learns who came by SAML.
        if signs_in_through_an_idp(user):
            logger.info("no password reset mail for user %s: they sign in through their identity provider", user.pk)
            return
        super().send_password_reset_mail(user, email, context)

    def logout(self, request: HttpRequest) -> None:
        user = request.user if request.user.is_authenticated else None
        super().logout(request)
        if user is not None:
            logbook_append(action="auth.signed_out", actor=user, detail={"by": "person"})
        # The new, empty session remembers which LogoutRequest the IdP's answer must match.
        pending = getattr(request, "passport_saml_logout", None)
        if pending:
            request.session[LOGOUT_PENDING_KEY] = pending
