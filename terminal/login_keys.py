"""The keys the portal logs in to a grant's instance with (browser terminal, CLI proxy): ``LoginKeys``
(terminal.bridge) whose certificates come from the requests services, for this grant and person."""

from __future__ import annotations

from accounts.models import User
from requests_app.models import Grant
from requests_app.services import grant_issue_certificate
from terminal.bridge import LoginKeys, Validity
from terminal.threads import in_db_thread


def grant_login_keys(*, grant: Grant, user: User) -> LoginKeys:
    """Certificates by ``grant_issue_certificate`` (which checks the person, the request and IAM each time);
    the RSA fallback's with the Ed25519 certificate's window."""

    async def issue(public_key: str, validity: Validity | None) -> list[str]:
        return await in_db_thread(grant_issue_certificate)(
            grant=grant, user=user, public_key=public_key, validity=validity, upstream=True
        )

    return LoginKeys(issue)
