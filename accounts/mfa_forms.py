"""The 2FA sign-in step's form: allauth's, with its refusals by the limit on codes on record.

allauth's ``AuthenticateForm`` checks the limit on codes (``login_failed``'s rates, per person)
before the code and, past it, refuses without a signal; a wrong code it announces
(``allauth.mfa.signals.authentication_failed``, recorded by accounts.signals). Here the refusal by
the limit is ``auth.sign_in_refused`` (``rate_limited``, naming the person: their password was
right), written once and then counted (accounts.security_log). Set as ``MFA_FORMS["authenticate"]``;
the allauth version is pinned, and tests/accounts/test_second_factor_refusals.py covers both.
"""

from __future__ import annotations

from allauth.core import context
from allauth.mfa.base.forms import AuthenticateForm
from django.core.exceptions import ValidationError

from accounts.security_log import sign_in_refusal_record

TOO_MANY_ATTEMPTS = "too_many_login_attempts"


class PassportAuthenticateForm(AuthenticateForm):
    def clean_code(self) -> str:
        try:
            return super().clean_code()
        except ValidationError as refused:
            if refused.code == TOO_MANY_ATTEMPTS:
                sign_in_refusal_record(request=context.request, person=self.user, reason="rate_limited")
            raise
