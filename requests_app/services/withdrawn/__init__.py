"""Ending the Session Manager sessions the portal started for the CLI's own data channel that the
account no longer allows: to a port an admin has since taken off the account, SSH on an account
whose CLI sessions an admin has since made recorded, any on an account whose sessions an admin has
since made moderated (no approver can watch them), or any on an instance whose region an admin has
since taken off the account. And likewise those the person started with the request's AWS
credentials (`passport aws-credentials`), which the portal did not start at all.

`passport forward` and `connect` to Windows (and, on a direct account, `connect`'s SSH and
`passport forward … :22`) hold a session of their own: the CLI speaks the data channel itself and
nothing of it passes the portal, so the recording proxy's recheck of open forwards
(terminal.proxy) never reaches it. The port, the recording and the region are checked when a
session starts (``grant_start_session``); this ends the sessions already open when one changes,
which would otherwise carry on, unrecorded in the second case, until the request ends.

Which sessions: the portal's own ``session.started`` entries for the account's active requests
(each names its session id, port, document and caller), narrowed in the database to ports the
account no longer opens, instances in a region it no longer lists and, on a recorded account, to
SSH (port 22, or the SSH document), or all of them on a moderated account, without
the recording paths' sessions (their SSH to port 22 is always open, and the proxy closes its own
forwards) and without those already ended on record. Then DescribeSessions on each instance
concerned (one call), so a session that ended by itself (the CLI stopped) is neither ended again
nor written down. Each one still open is ended with TerminateSession and ``session.terminated``
says why: ``"reason": "region"`` (with the ``region``), ``"port withdrawn"`` (with the ports
``allowed``), ``"moderation on"``, or ``"the account's CLI sessions are now recorded"``; a refusal by AWS is in that
entry with its error, does not stop the others, and is tried again by the next run.

Sessions started with the request's AWS credentials have no ``session.started`` entry: the person
ran ``aws ssm start-session`` themselves. They are found as removal finds a person's sessions
(``provisioning.sessions``): on the instances of the active requests that were issued credentials
(``AccessRequest.aws_credentials_until``), the sessions DescribeSessions lists (the same one call
per instance) whose owner is the request's role session (``passport-r<request>-u<person>``) and
that no ``session.started`` entry names (those are the portal's own: the recording paths', and the
CLI's, which the entries above decide). DescribeSessions says their document, not their port: so
once the account's CLI sessions are recorded every one of them ends (a forward may be to sshd),
once its sessions are moderated every one ends (``"moderation on"``), and on an instance whose region
was taken off every one ends too; a port taken off the account
ends none of them (they never had to be to an open port: ``access_request_issue_aws_credentials``).
Their ``session.terminated`` says ``"via": "aws-credentials"`` and the ``document``.
The credentials themselves are not recalled (STS cannot): on an account made recorded or moderated
they may start a new session until they expire, so the frequent sweep
(``accounts_with_credentials_withdrawn``, every 30 s) runs this ending for each such account where
an active request's credentials have not expired, and for no other. An instance AWS
would not list is left to the next run, and the other instances go on. The Logbook is read after
the listing, so a session of the portal's own that is listed is known as such, except one whose
StartSession has just returned and whose entry is not yet written: on a recorded account that
one is taken for the credentials' and ended (the person connects again), never the other way round.

The IAM gate's re-check (``terminal.services.iam_recheck``) asks about these sessions too: it takes
the people and grants of those still open from ``direct_session_pairs`` (the CLI's own, and those
started with the request's AWS credentials) with the session documents they use, and ends those
whose documents the gate now refuses with ``direct_sessions_end_for_iam`` (``"reason":
"iam_denied"``, with the gate's refusal and the ``refused_documents``).

A revoked CLI sign-in ends the sessions it started (``sessions_end_for_tokens``, ``"reason": "cli sign-in
revoked"``): its ``session.started`` entries name it (``cli_token``); so does an expired one, found
by the periodic run (``"reason": "cli sign-in expired"``).

Destinations beyond the instance need nothing here: the portal starts no session to a remote host
(``AWS-StartPortForwardingSessionToRemoteHost`` is not a document it hands out), and ``ssh -L``
through the recording proxy is closed by the proxy itself.
"""

from requests_app.services.withdrawn.account import sessions_end_withdrawn
from requests_app.services.withdrawn.common import AWS_CREDENTIALS_VIA, WithdrawnSessions
from requests_app.services.withdrawn.credentials import accounts_with_credentials_withdrawn
from requests_app.services.withdrawn.iam import IAM_DENIED, direct_session_pairs, direct_sessions_end_for_iam
from requests_app.services.withdrawn.tokens import SIGN_IN_EXPIRED, SIGN_IN_REVOKED, sessions_end_for_tokens

__all__ = [
    "AWS_CREDENTIALS_VIA",
    "IAM_DENIED",
    "SIGN_IN_EXPIRED",
    "SIGN_IN_REVOKED",
    "WithdrawnSessions",
    "accounts_with_credentials_withdrawn",
    "direct_session_pairs",
    "direct_sessions_end_for_iam",
    "sessions_end_for_tokens",
    "sessions_end_withdrawn",
]
