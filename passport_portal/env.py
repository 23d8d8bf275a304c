"""Strict helpers for reading settings from the environment.

A malformed value is an error at start-up, never a silent default: a typo in
``PASSPORT_DEBUG=ture`` must not leave debug mode on in production.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    """Return ``name`` from the environment, or from the file named by ``name_FILE``."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is None:
        raise ImproperlyConfigured(f"The environment variable {name} is required.")
    return default


def env_given(name: str) -> bool:
    """Whether ``name`` (or ``name_FILE``) is set in the environment, empty or not."""
    return name in os.environ or bool(os.environ.get(f"{name}_FILE"))


def host_is_local(host: str | None) -> bool:
    """A unix socket (no host, or a path) or a loopback address: a connection to it stays on this host."""
    if not host or host.startswith("/"):
        return True
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host_is_local(url: str) -> bool:
    """Whether a DATABASE_URL or REDIS_URL (a unix socket, a loopback address, none at all) stays on this
    host; a URL that does not parse counts as local here (reading it as a URL fails on its own)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return True
    return host_is_local(unquote(host) if host else host)  # postgres://user@%2Frun%2Fpostgresql/db: a socket


# A production secret: at least this many characters, and at least this many different ones. Not 16
# different: `openssl rand -hex 32` (64 hex digits) lacks one of the 16 about one time in four, and
# `openssl rand -hex 16` has fewer than 8 about once in 30 million; "a" * 64 has 1, "changeme" repeated 7.
SECRET_MIN_LENGTH = 32
SECRET_MIN_DIFFERENT_CHARACTERS = 8


def production_secret_check(name: str, value: str, demo: str) -> None:
    """Refuse a production secret that is short, the demo's, or a few characters repeated; never quoting it."""
    if len(value) < SECRET_MIN_LENGTH or value == demo:
        raise ImproperlyConfigured(f"{name} must be a random secret of at least {SECRET_MIN_LENGTH} characters.")
    different = len(set(value))
    if different < SECRET_MIN_DIFFERENT_CHARACTERS:
        raise ImproperlyConfigured(
            f"{name} has only {different} different characters: it is no random secret (at least "
            f"{SECRET_MIN_DIFFERENT_CHARACTERS}). Make one with `openssl rand -base64 48`."
        )


def production_secrets_apart(secrets: dict[str, str]) -> None:
    """Refuse one value given for two keys (by name): each protects something else, and one leaked or
    rotated would be all of them."""
    first_named: dict[str, str] = {}
    for name, value in secrets.items():
        earlier = first_named.setdefault(value.strip(), name)
        if earlier != name:
            raise ImproperlyConfigured(
                f"{earlier} and {name} are the same value: give each key a random secret of its own."
            )


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off).")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from exc


def ed25519_private_key_check(name: str, pem: str) -> bytes:
    """Refuse a value that is not an unencrypted Ed25519 private key in PEM; the message never quotes it.
    Returns the key's raw public bytes: the key itself, however its PEM is laid out (line ends, wrapping)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            f"{name} is not an unencrypted PEM private key (as `openssl genpkey -algorithm ed25519` writes it)."
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"{name} must be an Ed25519 key.")
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


_KEY_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
# Names the unkeyed SHA-256 of entries written before keyed hashes; never a configured key's id.
LEGACY_LOGBOOK_KEY_ID = "legacy-sha256"


def logbook_keys_parse(*, current_id: str, current: str, old: str) -> dict[str, str]:
    """The Logbook's HMAC keys by id, newest first: the current one, then ``old`` (``id=secret,id=secret``)
    in the order given, which is the order the keys were retired in, the most recent first
    (``audit.key_order``: no entry under a key may follow one under a newer key)."""
    keys: dict[str, str] = {}
    pairs = [(current_id, current)]
    for item in (part.strip() for part in old.split(",")):
        if not item:
            continue
        key_id, sep, secret = item.partition("=")
        if not sep or not secret:
            raise ImproperlyConfigured("PASSPORT_LOGBOOK_OLD_KEYS is a comma-separated list of id=secret.")
        pairs.append((key_id.strip(), secret.strip()))
    for key_id, secret in pairs:
        if not key_id or len(key_id) > 32 or not set(key_id) <= _KEY_ID_CHARS or key_id == LEGACY_LOGBOOK_KEY_ID:
            raise ImproperlyConfigured(
                f"Logbook key id {key_id!r}: use 1-32 letters, digits, '.', '_' or '-' "
                f"(and not {LEGACY_LOGBOOK_KEY_ID})."
            )
        if key_id in keys:
            raise ImproperlyConfigured(f"Logbook key id {key_id!r} is configured twice.")
        if not secret:
            raise ImproperlyConfigured(f"Logbook key {key_id!r} is empty.")
        keys[key_id] = secret
    return keys


def logbook_key_pins_parse(raw: str, *, old_ids: list[str]) -> dict[str, int]:
    """``PASSPORT_LOGBOOK_OLD_KEYS_UNTIL``: ``id=entry,id=entry``, the last Logbook entry each old key
    may sign (the end of a rotation's overlap); every id one of ``old_ids``, never the current key."""
    pins: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key_id, sep, number = (part.strip() for part in item.partition("="))
        if not sep or not number.isascii() or not number.isdigit() or int(number) < 1:
            raise ImproperlyConfigured(
                f"PASSPORT_LOGBOOK_OLD_KEYS_UNTIL: {item[:80]!r} is not id=entry (an entry number, at least 1)."
            )
        if key_id not in old_ids:
            raise ImproperlyConfigured(
                f"PASSPORT_LOGBOOK_OLD_KEYS_UNTIL: {key_id[:40]!r} is not a key of PASSPORT_LOGBOOK_OLD_KEYS."
            )
        if key_id in pins:
            raise ImproperlyConfigured(f"PASSPORT_LOGBOOK_OLD_KEYS_UNTIL: {key_id!r} is pinned twice.")
        pins[key_id] = int(number)
    return pins


def time_windows_parse(name: str, values: list[str]) -> list[tuple[datetime, datetime]]:
    """``START/END`` pairs of ISO 8601 times with a UTC offset (``2026-12-05T10:00Z/2026-12-05T11:30Z``)."""
    windows = []
    for value in values:
        start_text, slash, end_text = value.partition("/")
        start: datetime | None = None
        end: datetime | None = None
        with contextlib.suppress(ValueError):
            start, end = datetime.fromisoformat(start_text.strip()), datetime.fromisoformat(end_text.strip())
        if not slash or start is None or end is None or start.tzinfo is None or end.tzinfo is None or end <= start:
            raise ImproperlyConfigured(
                f"{name}: {value[:80]!r} is not START/END, two ISO 8601 times with a UTC offset, END after START"
            )
        windows.append((start, end))
    return windows
