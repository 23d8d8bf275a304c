"""The password-change page's form: allauth's, with the current password checked as a sign-in is.

allauth's ``ChangePasswordForm`` checks the current password against the hash directly: a session
of the person (left open, or taken) could guess it far past the limit on guesses at one person (5
in 5 minutes, accounts.login_limits), unrecorded. Here it goes through the adapter's
``reauthenticate``, as the reauthenticate page does: the same counts as the sign-in's, each wrong
password ``auth.sign_in_refused`` (Django's ``user_login_failed``, accounts.signals), and past the
limit the form refuses without trying the password (``rate_limited``, accounts.adapters), an error
of the form, not of the password typed. Set as ``ACCOUNT_FORMS["change_password"]``; the allauth
version is pinned, and tests/accounts/test_password_change_limits.py covers it.
"""

from __future__ import annotations

from allauth.account.adapter import get_adapter
from allauth.account.forms import ChangePasswordForm
from django.core.exceptions import ValidationError


class PassportChangePasswordForm(ChangePasswordForm):
    def clean_oldpassword(self) -> str:
        password = str(self.cleaned_data.get("oldpassword", ""))
        adapter = get_adapter()
        if self.user is None:  # allauth's page always gives the form its signed-in person
            raise adapter.validation_error("enter_current_password")
        try:
            right = adapter.reauthenticate(self.user, password)
        except ValidationError as refused:
            self.add_error(None, refused)  # past the limit: nothing was checked
            return password
        if not right:
            raise adapter.validation_error("enter_current_password")
        return password
