"""Does AWS IAM let this person open a Session Manager session on these instances?

Passport never grants more than the customer's own IAM policies allow: before a request is
accepted, and again before each connection, the person's principal in the account is run
through IAM's SimulatePrincipalPolicy for what a Session Manager session of theirs takes, on
the resources AWS checks them on (Service Authorization Reference, AWS Systems Manager:
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html):

- ``ssm:StartSession`` on the instance, and on the session document the session uses
  (``arn:aws:ssm:<region>::document/<name>``: AWS-owned documents name no account). AWS
  checks a named document as well as the instance (Systems Manager User Guide,
  https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-specify-session-document.html),
  so a Deny on AWS-StartPortForwardingSession is a person's "no tunnels".
- ``ssm:TerminateSession`` on a session of their own. Its only resource is the session
  (``arn:aws:ssm:<region>:<account>:session/<session id>``); Session Manager names a
  session after whoever started it, ``<name>-<17 hex digits>``, and AWS's sample end-user
  policy lets people end their own with ``session/${aws:username}-*``
  (https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-restrict-access-examples.html).

Which documents, when (``session_documents``): a request, a certificate (SSH) and a Linux
connection with no document named ask about AWS-StartSSHSession on a Linux instance and
AWS-StartPortForwardingSession on a Windows one (Remote Desktop is a forward to 3389); AWS
credentials, which can start either, ask about both; ``grant_start_session`` asks about
exactly the document it is about to start.

The assumption about whose sessions: the person is simulated as their mapped IAM identity
(``principal_arn_for``), and asked whether that identity may end a session it started
itself (``own_session_arn``). Passport's own sessions for them are started by the portal's
role and ended by it; what the check stands for is the person's own permission, as AWS
would apply it to them. For an IAM user the session is ``<user name>-...``, and the keys a
request of theirs carries go with the question (``principal_context``: ``aws:username``,
``aws:PrincipalArn`` ...). For a role, sessions are named after the role session name,
which Passport does not know for the person's own sign-in (their identity provider sets
it): it asks about the name Passport gives this person's sessions on the request
(``scoped_role_session_name``; ``r0`` while the request is being made), and sends no
``aws:username`` (a role session has none: a policy on it does not allow a role). ``aws:userid``
is never sent (an IAM user's or role's unique id, which the portal's role may not read): a
policy built on it is refused as one Passport cannot confirm, naming the key.

The simulator knows only what it is told, so each instance's tags (from the inventory) are
sent as context (``fleet.aws.iam``); an answer that needed a condition key Passport cannot
give (``aws:SourceIp`` ...) is a refusal that names the key. Every answer, allowed or not,
goes to the Logbook.

The package, by responsibility: ``gate`` asks AWS and records the answer
(``iam_check_instances``, ``iam_check_grant``, ``IamUnavailable``); ``principals`` reads a
person's principal ARN and what a request of theirs carries (``Principal``,
``principal_context``, ``own_session_arn``, ``scoped_role_session_name``); ``refusals`` says
why a person is refused (no principal, a deleted one, one instance's answer).
"""

from requests_app.iam.gate import (
    PRINCIPAL_GONE_CODE,
    SESSION_ACTIONS,
    IamUnavailable,
    iam_check_grant,
    iam_check_instances,
    session_documents,
)
from requests_app.iam.principals import (
    Principal,
    absent_keys,
    own_session_arn,
    principal_context,
    scoped_role_session_name,
)
from requests_app.iam.refusals import (
    iam_accounts_without_principal,
    iam_gone_principal_reason,
    iam_missing_principal_reason,
)

__all__ = [
    "PRINCIPAL_GONE_CODE",
    "SESSION_ACTIONS",
    "IamUnavailable",
    "Principal",
    "absent_keys",
    "iam_accounts_without_principal",
    "iam_check_grant",
    "iam_check_instances",
    "iam_gone_principal_reason",
    "iam_missing_principal_reason",
    "own_session_arn",
    "principal_context",
    "scoped_role_session_name",
    "session_documents",
]
