"""The access-request lifecycle: one service per transition.

Every transition is a conditional UPDATE on the current status, so a double click, two
approvers at once or a duplicate task applies it once; the loser sees the new state.
Work for the fleet is enqueued only after commit.

Lock order. A transaction that takes more than one of these rows takes them in this order, so
no two transactions wait for each other in a circle (PostgreSQL would abort one, a deadlock):

1. the account's row, by a transaction that weighs the account's approval policy and acts on it:
   FOR SHARE by an approval, a provisioning start and an extension, before they read the policy
   (``accounts.approval_policies.approval_policy_hold``), FOR NO KEY UPDATE by a save of the policy
   before it weighs the account's requests (``policy.access_requests_policy_changed``; the admin's
   save of the account page holds it already, by its UPDATE of the row). So a save waits for those
   under way and finds what they did (an approved or provisioning request a deny rule now refuses is
   rejected or revoked), and they wait for a save not yet committed and read the policy it saved;
2. people and their memberships, as a change of people writes them (a site admin's edit, the
   sync at a SAML sign-in, a deactivation): the User row, then Membership rows by pk (the order
   the admin's inline rows are saved in); asking for access (``create``) then holds the rows of the
   instances it asks for, by pk, FOR NO KEY UPDATE, so two requests of one person for one host are
   stored one after the other, the later one checked again. A region's inventory sync takes
   those rows FOR UPDATE, all it will write in one query by pk before writing any
   (``inventory._sync_region``), so it and a request wait for each other in pk order, never in a
   circle; it takes the head later, outside that transaction, and no person's row;
3. the rows of the live requests that such a change ends (``access_requests_revoke_for_memberships``,
   by pk; a policy's save locks those it weighs, by pk), then their grants; a request transition
   starts here, with its own row, and so does a worker settling a grant (``provisioning.create``,
   its request's row FOR NO KEY UPDATE, then the grant's: the order an ending takes them in);
4. the Logbook's head (``audit.services``), always last: every append takes it and holds it to
   the commit. So a transaction that appends and then goes on to lock rows of 1 to 3 defers its
   entries to its end with ``logbook_batch``: every POST of the admin (``passport_portal.admin_site``),
   the SAML sync (``accounts.saml.services``), a save of an inactive person (``accounts.signals``).

References are checked before the head. Django's foreign keys are deferred in PostgreSQL: a row
that refers to a person or an account (a request, a membership, a terminal session) takes FOR KEY
SHARE on their row when its transaction commits, by then holding the head. A change of that row's
key (a site admin renaming a person, a unique column: its UPDATE takes FOR UPDATE; a deletion; an
account's id is fixed once saved), appending next, would wait for the head while that commit waits for it:
a deadlock, PostgreSQL aborting one of the two. So every append within a transaction first runs the
checks due so far (``audit.services._references_checked``: those FOR KEY SHARE locks come before
the head; one round trip). A row written after the transaction's last append is still checked at
commit, after the head: write such rows first, or append in ``logbook_batch``. For that reason too,
a lock on a User row is FOR NO KEY UPDATE (``select_for_update(no_key=True)``: the SAML sync,
``terminal.slots``, approving, asking for access under the cap on waiting requests (``create``); a
save's UPDATE that keeps the username takes that one too), never FOR UPDATE, which such a commit
would wait for while its holder waits for the head.

Approving holds the account's row (1), then locks a *pending* request's row, then the User rows of
its requester, its approver and those who approved it already, then their Membership rows of the
account, each by pk (``decide._people_locked``; ``approvals_standing(lock=True)`` counting several
approvals takes the approvers' again), then the head. So a change of the requester (role lowered,
deactivated) not yet committed is waited for and refuses the approval, and one that comes later
waits for the approval and revokes what it approved. That puts 3 before 2, yet closes no circle: a
change of people locks only the rows of live requests (the approvals it discounts on pending ones
are read without a lock), and the people and memberships are taken in the order of 2. Neither
lock of 1 conflicts with the FOR KEY SHARE a row referring to the account takes at its commit.
"""

from __future__ import annotations

from requests_app.models import DECISION_NOTE_MAX
from requests_app.services.lifecycle.cancel import access_request_cancel
from requests_app.services.lifecycle.common import (
    DEFAULT_DURATION,
    INSTANCES_MAX,
    MAX_TOTAL_DURATION,
    MIN_DURATION,
    REASON_MAX,
    TICKET_RE,
    instance_problem,
)
from requests_app.services.lifecycle.create import access_request_create
from requests_app.services.lifecycle.decide import (
    access_request_approvals_discounted,
    access_request_approvals_reweighed,
    access_request_approve,
    access_request_reject,
)
from requests_app.services.lifecycle.ending import (
    access_request_complete,
    access_request_reject_if_policy_denies,
    access_request_reject_if_region_taken_off,
    access_request_revoke_if_not_admin,
    access_request_settle,
    access_requests_revoke_for_memberships,
    access_requests_revoke_for_person,
)
from requests_app.services.lifecycle.expire import (
    access_request_expire,
    access_requests_claim_due,
    access_requests_expire,
    access_requests_expire_due,
    due_for_expiry,
)
from requests_app.services.lifecycle.extend import access_request_extend
from requests_app.services.lifecycle.policy import (
    access_request_reopen_if_approvals_short,
    access_requests_policy_changed,
)

__all__ = [
    "DECISION_NOTE_MAX",
    "DEFAULT_DURATION",
    "INSTANCES_MAX",
    "MAX_TOTAL_DURATION",
    "MIN_DURATION",
    "REASON_MAX",
    "TICKET_RE",
    "access_request_approvals_discounted",
    "access_request_approvals_reweighed",
    "access_request_approve",
    "access_request_cancel",
    "access_request_complete",
    "access_request_create",
    "access_request_expire",
    "access_request_extend",
    "access_request_reject",
    "access_request_reject_if_policy_denies",
    "access_request_reject_if_region_taken_off",
    "access_request_reopen_if_approvals_short",
    "access_request_revoke_if_not_admin",
    "access_request_settle",
    "access_requests_claim_due",
    "access_requests_expire",
    "access_requests_expire_due",
    "access_requests_policy_changed",
    "access_requests_revoke_for_memberships",
    "access_requests_revoke_for_person",
    "due_for_expiry",
    "instance_problem",
]
