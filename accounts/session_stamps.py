"""A person's other sessions signed out when their second factor changes; all of them when they are
deactivated.

A session signed in with the password alone, before TOTP was turned on, would otherwise stay signed
in, and could re-authenticate with that password and turn TOTP off again. Each change of a second
factor (added, removed, its secret replaced, recovery codes made anew: accounts.signals) makes the
person's security stamp anew; it is part of every session's sign-in hash (``User``), so Django signs
out every session that stored the old one at its next request, as after a password change. The
session that made the change is given the new hash under its own key (its open terminals stay
open), and stays signed in.

A deactivation renews the stamp too (accounts.signals), keeping no session: Django only refuses an
inactive person's session while they are inactive, and leaves it in place, its hash unchanged, so
without this every session from before it would sign in again once they are made active again.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import HASH_SESSION_KEY

from accounts.models import User
from accounts.security_log import current_request, signed_in_person


def security_stamp_renew(*, user_id: int, keep_current: bool = True) -> str:
    """Sign out every session of this person but the current request's, if it is theirs (none at
    all with ``keep_current`` False); returns the new stamp, for an instance of the person in hand
    (a later save of it must not write the old one back)."""
    stamp = secrets.token_hex(16)
    # An UPDATE, not a save: nothing of who gets in changed that the person's trail should show.
    User.objects.filter(pk=user_id).update(security_stamp=stamp)
    if not keep_current:
        return stamp
    request = current_request()
    person = signed_in_person(request)
    if request is not None and person is not None and person.pk == user_id:
        person.security_stamp = stamp
        # The new hash under the same session key: not update_session_auth_hash, whose cycle_key
        # would drop the key this browser's open terminals were opened under and close them as
        # signed out. Nothing here signs anyone in, so there is no fixation to break.
        request.session[HASH_SESSION_KEY] = person.get_session_auth_hash()
    return stamp
