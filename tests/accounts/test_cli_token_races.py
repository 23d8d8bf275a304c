"""A revocation of a person's CLI tokens (a second factor added or removed, their "revoke all")
racing the CLI's own calls (a poll collecting its token, ``passport auth logout``), each on its own
PostgreSQL connection, as two processes would.

The CLI's calls lock their row (the device code, the token) and then append to the Logbook, whose
head is locked to the commit. So a revocation must take those rows before the head: its entries are
appended at its end (``logbook_batch``). Each test forces the interleaving in which it did not (the
CLI's side held with its row locked until the revocation waits for that row): both sides must
succeed, one after the other, as in ``test_membership_races``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from allauth.mfa.models import Authenticator

from accounts import cli_services, cli_tokens
from accounts.models import ApiToken, User
from audit.integrity import logbook_verify
from audit.models import LogbookEntry
from tests.accounts.test_membership_races import (  # noqa: F401  (committed, environment: autouse fixtures)
    Hold,
    Side,
    committed,
    environment,
    wait_for_a_lock_waiter,
)
from tests.conftest import World

ADDRESS = "198.51.100.9"


def held_in(side: Side, hold: Hold) -> Callable[..., Any]:
    """``hold`` for ``side`` only: any other thread calls the original straight through."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is side:
            return hold(*args, **kwargs)
        return hold.original(*args, **kwargs)

    return call


def _confirmed_code(user: User) -> str:
    start = cli_services.device_authorization_start(client_name="laptop")
    cli_services.device_authorization_confirm(user_code=start.user_code, user=user)
    return start.device_code


def _actions() -> list[str]:
    return list(LogbookEntry.objects.order_by("pk").values_list("action", flat=True))


def _race_with_a_poll(monkeypatch: pytest.MonkeyPatch, user: User, change: Callable[[], Any]) -> None:
    """The poll stops inside its transaction just before it makes the token (its code's row locked);
    ``change`` runs until it waits for that row; then the poll goes on. Both must succeed, and the
    token the poll got is revoked by the change that came after it."""
    device_code = _confirmed_code(user)
    poll = Side(lambda: cli_services.device_token_exchange(device_code=device_code, source=ADDRESS))
    hold = Hold(cli_services.secrets.token_urlsafe)
    monkeypatch.setattr(cli_services.secrets, "token_urlsafe", held_in(poll, hold))
    poll.start()
    hold.wait(poll)
    side = Side(change)
    side.start()
    wait_for_a_lock_waiter(unless_done=side)  # the change waits for the code's row
    assert side.is_alive(), repr(side.error)
    hold.release.set()
    issued = poll.finish()
    side.finish()
    assert issued.username == user.username
    assert not ApiToken.objects.filter(user=user).exists()  # issued, then revoked
    assert logbook_verify().intact


def test_a_second_factor_added_while_the_cli_collects_its_token(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    user = world.requester

    def add_totp() -> Authenticator:
        return Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "x"})

    _race_with_a_poll(monkeypatch, user, add_totp)
    actions = _actions()
    assert actions.index("cli.token_issued") < actions.index("auth.mfa_added") < actions.index("cli.token_revoked")


def test_a_second_factor_removed_while_the_cli_collects_its_token(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = world.requester
    totp = Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "x"})

    _race_with_a_poll(monkeypatch, user, totp.delete)
    actions = _actions()
    assert actions.index("cli.token_issued") < actions.index("auth.mfa_removed") < actions.index("cli.token_revoked")


def test_revoke_all_while_the_cli_signs_out(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # A code on its way too, so the revocation has an entry (cli.device_codes_voided) before its tokens.
    user = world.requester
    cli_services.device_token_exchange(device_code=_confirmed_code(user))
    token = ApiToken.objects.get(user=user)
    _confirmed_code(user)
    # `passport auth logout` stops with its token's row locked and deleted, before its entry.
    logout = Side(
        lambda: cli_tokens.api_token_revoke(token=token, actor=user, reason=cli_tokens.RevokeReason.SIGNED_OUT)
    )
    hold = Hold(cli_tokens.logbook_append)
    monkeypatch.setattr(cli_tokens, "logbook_append", held_in(logout, hold))
    logout.start()
    hold.wait(logout)
    revoke_all = Side(
        lambda: cli_tokens.api_tokens_revoke_for_user(
            user_id=user.pk, actor=user, reason=cli_tokens.RevokeReason.REVOKED
        )
    )
    revoke_all.start()
    wait_for_a_lock_waiter(unless_done=revoke_all)  # revoking all waits for the token's row
    assert revoke_all.is_alive(), repr(revoke_all.error)
    hold.release.set()
    assert logout.finish() is True
    assert revoke_all.finish() == 0  # the token was gone by then
    assert not ApiToken.objects.filter(user=user).exists()
    actions = _actions()
    assert actions.count("cli.token_revoked") == 1
    assert actions.index("cli.token_revoked") < actions.index("cli.device_codes_voided")
    assert logbook_verify().intact
