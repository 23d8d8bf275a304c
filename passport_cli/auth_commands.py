"""`passport auth login|logout|status`: the device sign-in and the stored token."""

from __future__ import annotations

import argparse
import platform
import sys
import time
import webbrowser
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from passport_cli.arguments import SharedArguments, Subcommands
from passport_cli.client import (
    Portal,
    cleartext_elsewhere,
    field,
    portal_shown,
    portal_without_userinfo,
    resolve_portal,
    unreadable,
)
from passport_cli.config import (
    Credentials,
    check_writable_dir,
    credentials_path,
    delete_credentials,
    load_credentials,
    save_credentials,
    usable_token,
)
from passport_cli.display import printable
from passport_cli.errors import EXIT_CODES_HELP, CliError, Exit
from passport_cli.output import emit_json, progress

SLOW_DOWN_SECONDS = 5
# The portal says how often to poll and how long its code lasts; whatever it says (a year, zero, a word),
# the CLI polls at most once a second, waits at most a minute between polls, and gives up after half an hour.
MIN_POLL_SECONDS, MAX_POLL_SECONDS, DEFAULT_POLL_SECONDS = 1, 60, 5
MAX_CODE_SECONDS, DEFAULT_CODE_SECONDS = 30 * 60, 10 * 60


def _seconds(value: object, default: int, low: int, high: int) -> int:
    """``value`` (a number of seconds from the portal) within ``low`` and ``high``; ``default`` when it is no number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        return default
    return int(min(max(value, low), high))


def _still_pending(error: CliError) -> bool:
    if error.portal_error:
        return error.portal_error == "authorization_pending"
    # A portal that sent no error name: its words.
    return "Waiting for the code" in error.message or "pending" in error.message


def cmd_auth_login(args: argparse.Namespace) -> int:
    try:
        stored = load_credentials()
    except CliError:
        stored = None  # unreadable or incomplete: what signing in again replaces (the message says so)
    base = resolve_portal(args.portal, stored)
    if cleartext_elsewhere(base):
        # The device code, then the bearer token (and with it every later command) would cross the network
        # in clear: anyone on the path could take the sign-in.
        if not args.insecure_http:
            raise CliError(
                f"Refusing to sign in over plain HTTP to {portal_shown(base)}: the sign-in code and the token "
                "would cross the network unencrypted. Use the portal's https:// URL, or pass --insecure-http "
                "to send them in clear all the same.",
                Exit.USAGE,
            )
        progress(f"signing in over plain HTTP to {portal_shown(base)} (--insecure-http): the token is sent unencrypted")
    # Before the portal issues anything: a token that could not be kept would be of use to nobody.
    check_writable_dir(credentials_path().parent)
    portal = Portal(base)
    started = portal.post_object("/api/cli/device/", {"client_name": f"{platform.node()}"[:100]})
    code, device_code = field(started, "user_code", str), field(started, "device_code", str)
    # Only a page of the portal itself: a portal (or anyone on the path to an http:// one) must
    # not make this machine open another site, a file:// URL or some other scheme's handler.
    uri = _portal_page(base, started.get("verification_uri_complete")) or _portal_page(
        base, started.get("verification_uri")
    )
    if uri is None:
        raise CliError(
            f"The portal's sign-in page is not on {printable(base)}: "
            f"{printable(started.get('verification_uri'))}. Not opening it.",
            Exit.AUTH,
        )
    print(f"To sign in, open {printable(uri)} and confirm the code {printable(code)}", file=sys.stderr)
    opened = False
    if not args.no_browser:
        try:
            opened = webbrowser.open(uri)
        except webbrowser.Error:
            opened = False
    if not opened:
        print(f"(No browser could be opened here: open {printable(uri)} yourself.)", file=sys.stderr)
    interval = _seconds(started.get("interval"), DEFAULT_POLL_SECONDS, MIN_POLL_SECONDS, MAX_POLL_SECONDS)
    lifetime = _seconds(started.get("expires_in"), DEFAULT_CODE_SECONDS, MIN_POLL_SECONDS, MAX_CODE_SECONDS)
    deadline = time.monotonic() + min(lifetime, args.timeout or lifetime)
    progress("waiting for confirmation in the portal (Ctrl-C to stop)...")
    failing: CliError | None = None  # the portal's last failure to answer, until it answers again
    while True:
        wait = interval
        try:
            token = portal.post_object("/api/cli/token/", {"device_code": device_code})
            break
        except CliError as error:
            if _transient(error):
                # A proxy's 502 while the portal restarts, a dropped connection: no answer to the sign-in yet.
                if failing is None:
                    progress(f"{error.message}; trying again until the code expires")
                failing = error
            elif error.portal_error == "slow_down":
                # RFC 8628 section 3.5: 5 seconds more, for this poll and every later one.
                interval = min(interval + SLOW_DOWN_SECONDS, MAX_POLL_SECONDS)
                wait = min(max(interval, error.retry_after or 0), MAX_POLL_SECONDS)
                failing = None
            elif not _still_pending(error):
                raise CliError(f"Sign-in failed: {error.message}", Exit.AUTH) from error
            else:
                failing = None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if failing is not None:
                raise CliError(
                    f"{failing.message} (until the code expired): run `passport auth login` again.", failing.code
                )
            raise CliError("The code expired before it was confirmed: run `passport auth login` again.", Exit.AUTH)
        time.sleep(min(wait, remaining))  # the last poll when the code ends, not a wait past it
    access_token = field(token, "access_token", str)
    if not usable_token(access_token):
        raise unreadable(token.where, "an access token with characters no HTTP header can carry")
    credentials = Credentials(
        portal=base,
        token=access_token,
        expires_at=field(token, "expires_at", str),
        username=field(token, "username", str),
        insecure_http=cleartext_elsewhere(base),  # refused above unless --insecure-http was given
    )
    if stored is not None:
        # The token this one replaces would stay valid, held by no CLI, for `auth logout` to miss.
        progress(_revoke_replaced(stored))
    try:
        path = save_credentials(credentials)
    except CliError as error:
        raise CliError(f"{error.message}. {_revoke_unstored(credentials)}", error.code) from error
    print(
        f"Signed in to {printable(base)} as {printable(credentials.username)} "
        f"until {printable(credentials.expires_at)} "
        f"(token in {printable(path)})."
    )
    return Exit.OK


def _transient(error: CliError) -> bool:
    """The portal could not be reached, or answered 5xx (it, or a proxy before it): worth polling again."""
    return error.code == Exit.UNREACHABLE or (error.status or 0) >= 500


def _revoke(credentials: Credentials) -> CliError | None:
    """Ask the portal the token belongs to to revoke it; None once it did, else the portal's error.
    Whether the token has expired is the portal's to say: the local clock may be wrong. A token to an
    http:// portal on another host that nobody chose to send in clear (``Portal.signed_in``) is not sent."""
    if cleartext_elsewhere(credentials.portal) and not credentials.insecure_http:
        return CliError("not sent over plain HTTP", Exit.USAGE)
    try:
        Portal(credentials.portal, credentials.token).post("/api/cli/token/revoke/")
    except CliError as error:
        return error
    return None


def _not_revoked(credentials: Credentials, error: CliError) -> str:
    return (
        f"({error.message}): revoke it under CLI sign-ins in {portal_shown(credentials.portal)}, "
        f"or it stays valid until {printable(credentials.expires_at)}."
    )


def _revoke_unstored(credentials: Credentials) -> str:
    """Revoke a token the CLI could not store (the portal keeps it otherwise); says what became of it."""
    error = _revoke(credentials)
    if error is not None:
        return f"The portal did not revoke the token it issued {_not_revoked(credentials, error)}"
    return "The token the portal issued is revoked: make the config dir writable and sign in again."


def _revoke_replaced(stored: Credentials) -> str:
    """Revoke the stored token a new sign-in replaces (to this portal or another); says what became of it."""
    error = _revoke(stored)
    if error is None:
        return f"the token of the earlier sign-in is revoked (on {portal_shown(stored.portal)})"
    if error.code == Exit.AUTH:
        return "the token of the earlier sign-in was no longer valid"
    return f"the portal did not revoke the token of the earlier sign-in {_not_revoked(stored, error)}"


def _portal_page(base: str, uri: object) -> str | None:
    """The page ``uri`` names, on the portal this CLI talks to (its scheme, host and port), when
    ``uri`` is an http(s) URL of the portal's host; else None. The portal builds it from the Host
    it was asked under; behind a proxy its scheme or port may say otherwise, the base is what works."""
    if not isinstance(uri, str) or _has_control_characters(uri):
        return None
    page, portal = urlsplit(uri), urlsplit(base)
    if page.scheme not in ("http", "https") or "@" in page.netloc or page.hostname != portal.hostname:
        return None
    return urlunsplit((portal.scheme, portal.netloc, page.path, page.query, ""))


def _has_control_characters(text: str) -> bool:
    return printable(text) != text


def cmd_auth_logout(args: argparse.Namespace) -> int:
    credentials = load_credentials()
    if credentials is None:
        print("Not signed in.")
        return Exit.OK
    error = _revoke(credentials)  # also when it looks expired here: the portal's clock decides
    if error is not None and not (error.code == Exit.AUTH and credentials.expired):
        progress(f"the portal did not revoke the token ({error.message}); it is deleted here anyway")
    delete_credentials()
    print(f"Signed out of {portal_shown(credentials.portal)}.")
    return Exit.OK


def cmd_auth_status(args: argparse.Namespace) -> int:
    credentials = load_credentials()
    if credentials is None:
        status: dict[str, Any] = {"signed_in": False}
    else:
        status = {
            "signed_in": not credentials.expired,
            "expired": credentials.expired,
            "portal": portal_without_userinfo(credentials.portal),
            "username": credentials.username,
            "expires_at": credentials.expires_at,
            "credentials_file": str(credentials_path()),
        }
    if args.json:
        emit_json(status)
    elif credentials is None:
        print("Not signed in: run `passport auth login`.")
    elif credentials.expired:
        print(
            f"The sign-in to {portal_shown(credentials.portal)} expired at {printable(credentials.expires_at)}: "
            "run `passport auth login`."
        )
    else:
        print(
            f"Signed in to {portal_shown(credentials.portal)} as {printable(credentials.username)} "
            f"until {printable(credentials.expires_at)}."
        )
    return Exit.OK if status["signed_in"] else Exit.AUTH


def add_parsers(commands: Subcommands, shared: SharedArguments) -> None:
    """auth login|logout|status."""
    auth = commands.add_parser("auth", help="sign in and out", epilog=EXIT_CODES_HELP, formatter_class=shared.formatter)
    auth_commands = auth.add_subparsers(dest="auth_command", metavar="COMMAND", required=True)
    login = auth_commands.add_parser(
        "login",
        parents=[shared.common],
        help="sign in through the portal in your browser",
        description="Shows a code, opens the portal to confirm it, and stores a token (mode 0600) in the config dir. "
        "The portal's URL is https://, or http:// only on this machine (localhost, 127.0.0.1, ::1) unless "
        "--insecure-http is given.",
    )
    login.add_argument("--no-browser", action="store_true", help="only print the URL")
    login.add_argument("--timeout", type=int, default=0, help="give up after this many seconds")
    login.add_argument(
        "--insecure-http",
        action="store_true",
        help="sign in to an http:// portal on another host (refused otherwise, exit 2): the code and the token "
        "then cross the network unencrypted, readable by anyone on the path",
    )
    login.set_defaults(handler=cmd_auth_login)
    auth_commands.add_parser("logout", parents=[shared.common], help="revoke and delete the stored token").set_defaults(
        handler=cmd_auth_logout
    )
    auth_commands.add_parser(
        "status", parents=[shared.common, shared.as_json], help="who is signed in (exit 3 if nobody)"
    ).set_defaults(handler=cmd_auth_status)
