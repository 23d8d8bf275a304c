"""Signing in: password rules, backends, allauth and its TOTP, the SAML identity providers."""

from __future__ import annotations

import json

from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import env_int, env_str
from passport_portal.settings.environment import PASSPORT_ENV

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # Django's and allauth's password backends, refusing people who sign in by SAML (accounts/auth_backends.py).
    "accounts.auth_backends.LocalModelBackend",
    "accounts.auth_backends.LocalAllauthBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "requests:list"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
# People are provisioned by an admin or by the identity provider, never by self-sign-up.
ACCOUNT_ADAPTER = "accounts.adapters.NoSignupAccountAdapter"
# Password guesses: per client address, and per person ("key": the person, whatever the Host header or
# the login's form, username or email: accounts/login_limits.py through the adapter).
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
ACCOUNT_SESSION_REMEMBER = False
# A reset link sets a break-glass site admin's password: it works once, and only this long after it
# was sent (Django's default is 3 days of a link lying in a mailbox).
PASSWORD_RESET_TIMEOUT = env_int("PASSPORT_PASSWORD_RESET_SECONDS", 3600)
if not 60 <= PASSWORD_RESET_TIMEOUT <= 86400:
    raise ImproperlyConfigured("PASSPORT_PASSWORD_RESET_SECONDS must be between 60 and 86400 (a day).")
# A reset asked for an address nobody has mails nothing (sign-up is closed); the page says the same
# either way, so nobody learns which addresses have an account.
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
# allauth's mails name the portal by PASSPORT_BASE_URL (accounts/adapters.py), never the Host header.
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Passport] "
# A local person (a break-glass site admin) is told by mail when their password or second factor changes.
ACCOUNT_EMAIL_NOTIFICATIONS = True
# allauth's forms replaced (class paths, no password): the reset page queues its mail for a worker,
# for every address alike, as a mail server's time or error in the page would tell who has a local
# account (accounts/password_reset_mail.py); the current password on the change page is checked as a
# sign-in is, on the same limit and on record (accounts/password_forms.py).
ACCOUNT_FORMS = {
    "reset_password": "accounts.password_reset_mail.QueuedResetPasswordForm",  # nosec B105
    "change_password": "accounts.password_forms.PassportChangePasswordForm",  # nosec B105
}
# Local accounts are the break-glass way in; each person may add TOTP (with recovery codes).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Passport"
# TOTP secrets and recovery-code seeds sealed at rest (accounts/mfa.py).
MFA_ADAPTER = "accounts.mfa.PassportMFAAdapter"
# A wrong code, and one refused by the limit on codes, is on record (accounts/mfa_forms.py).
MFA_FORMS = {"authenticate": "accounts.mfa_forms.PassportAuthenticateForm"}

# SAML identity providers, one per identity store (see accounts/saml/config.py for the keys):
# a JSON list in PASSPORT_SAML_IDPS, or in the file PASSPORT_SAML_IDPS_FILE. Unset means no
# SAML (local accounts only); the admin can add more. Production accepts only https IdPs.
try:
    PASSPORT_SAML_IDPS = json.loads(env_str("PASSPORT_SAML_IDPS", "") or "[]")
except ValueError as exc:
    raise ImproperlyConfigured(f"PASSPORT_SAML_IDPS is not valid JSON: {exc}") from exc
if not isinstance(PASSPORT_SAML_IDPS, list):
    raise ImproperlyConfigured("PASSPORT_SAML_IDPS must be a JSON list of identity providers.")
# Optional SP key pair: with it, AuthnRequests and LogoutRequests are signed.
PASSPORT_SAML_SP_CERT = env_str("PASSPORT_SAML_SP_CERT", "")
PASSPORT_SAML_SP_KEY = env_str("PASSPORT_SAML_SP_KEY", "")

if PASSPORT_ENV == "test":
    # Hashing test personas' passwords with PBKDF2 would dominate the suite's run time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
