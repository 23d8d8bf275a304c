"""What a Linux grant's authorized_keys lines on its host were last written with, and whether they
are behind: the CA keys they trust (``Grant.key_ca_fingerprints``) and whether they trust the person's
direct principal (``Grant.key_direct_login``). A script that landed records what it carried; one
that finds the portal moved on while it was on its way (a CA rotation, an account switched to
recorded) has the grant's lines rewritten (``refresh_grant_keys``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db.models import Q

from accounts.models import AwsAccount
from core.dispatch import task_send_on_commit
from requests_app.models import Grant, Instance
from sshca.services import ca_key_fingerprints, ca_trusted_public_keys

logger = logging.getLogger(__name__)


def direct_login_allowed(account: AwsAccount) -> bool:
    """Whether a person's own certificate may log in to the account's instances' sshd (the grant's
    direct principal, ``core.usernames.direct_principal``): only while the account's CLI sessions are
    direct and it is not moderated, as the account row was read. The grants' lines trust that
    principal exactly then: a create renders them so, and a grant whose host's lines say otherwise
    (``Grant.key_direct_login``) has them rewritten (``upkeep.grants_needing_key_refresh``)."""
    return account.cli_sessions == AwsAccount.CliSessions.DIRECT and not account.require_session_join


def _direct_login_behind(grant_id: int, written: bool) -> bool:
    """Once a script whose lines trust the direct principal or not (``written``) landed on a ready
    grant's host: whether the account allows direct logins otherwise now (an admin's switch while
    the script was on its way). If so its lines are rewritten at once. Read after the script landed,
    so a switch committed before is seen here and one committed later queues its own refresh."""
    grant = Grant.objects.select_related("request__account").filter(pk=grant_id).first()
    if grant is None or direct_login_allowed(grant.request.account) == written:
        return False
    logger.info("grant %s: the account's direct logins changed while its script was on its way", grant_id)
    task_send_on_commit("refresh_grant_keys", grant_id)
    return True


def _direct_login_written(grant: Grant, written: bool) -> None:
    """Record whether the lines a script landed on ready ``grant``'s host trust the direct principal
    (``written``), or have them rewritten (``_direct_login_behind``). Kept only if no other script
    recorded its own since ``grant`` was loaded: two writers may land in either order, so the loser
    says it no longer knows (None), which the periodic task and the refresh queued here rewrite."""
    loaded = grant.key_direct_login
    unchanged = Q(key_direct_login__isnull=True) if loaded is None else Q(key_direct_login=loaded)
    if Grant.objects.filter(unchanged, pk=grant.pk).update(key_direct_login=written):
        _direct_login_behind(grant.pk, written)
        return
    Grant.objects.filter(pk=grant.pk).update(key_direct_login=None)
    task_send_on_commit("refresh_grant_keys", grant.pk)


def ca_keys_for(grant: Grant) -> list[str]:
    """The CA public key lines the grant's create script is to carry now: every active and trusted
    key on Linux (read once, so what the script carried is what is recorded), none on Windows."""
    return ca_trusted_public_keys() if grant.platform == Instance.Platform.LINUX else []


def ca_fingerprints_now() -> list[str]:
    """The fingerprints of the CA keys hosts must trust now, sorted (as ``Grant.key_ca_fingerprints``)."""
    return ca_key_fingerprints(ca_trusted_public_keys())


def _ca_keys_behind(grant_id: int, written: list[str]) -> bool:
    """Once a script carrying the CA keys ``written`` (fingerprints) landed on a ready grant's host:
    whether the CA's keys changed since it was rendered. If so its lines are marked not known
    (None), and rewritten at once.

    Read after the script landed, and (for a grant that just became ready) after that commit: a
    rotation or retirement committed later queues its own refresh, which lists this grant (ready
    by then) and renders the keys of after it. One committed before is seen here. The refresh
    queued here renders after the script landed, so its lines are the last written. Marking them
    not known keeps the grant in ``bind_grant_keys``'s list should that refresh fail for good, and
    makes a concurrent writer's record give way (``_ca_keys_written`` keeps its own only if the
    record is still what it loaded).
    """
    if written == ca_fingerprints_now():
        return False
    Grant.objects.filter(pk=grant_id).update(key_ca_fingerprints=None)
    logger.info("grant %s: the CA keys changed while its script was on its way; its lines are rewritten", grant_id)
    task_send_on_commit("refresh_grant_keys", grant_id)
    return True


def _ca_keys_written(grant: Grant, ca_public_keys: Sequence[str]) -> None:
    """Record the CA keys a script on ready ``grant``'s host carried, once it landed (or have them
    rewritten, ``_ca_keys_behind``). Kept only if no other script recorded its own since ``grant``
    was loaded: two writers may land in either order, so the loser says it no longer knows."""
    written = ca_key_fingerprints(ca_public_keys)
    if _ca_keys_behind(grant.pk, written):
        return
    loaded = grant.key_ca_fingerprints
    unchanged = Q(key_ca_fingerprints__isnull=True) if loaded is None else Q(key_ca_fingerprints=loaded)
    kept = Grant.objects.filter(unchanged, pk=grant.pk).update(key_ca_fingerprints=written)
    if not kept:
        Grant.objects.filter(pk=grant.pk).update(key_ca_fingerprints=None)
