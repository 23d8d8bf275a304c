"""One Logbook entry from PostgreSQL's COPY text: its fields undone from COPY's escapes, its
time written as ``audit.services.canonical_time`` writes it, and its verdict (does the content
still match the hash?). Nothing here touches the database, only the text and the configured
keys: the reading itself, serial or in parallel processes, is ``audit.chain_scan``.

How a verdict stays exactly as strict as hashing the typed row (``EntryHasher.digest``):

- the columns must have the model's types (``chain_scan.fast_scan_supported``), so every value
  is printed by PostgreSQL's own output function, in UTC, ISO style;
- a row whose COPY text has no backslash (no NULL, no escaped character) and whose key is a
  configured Logbook key has its canonical bytes assembled here (``canonical_message``), the
  same bytes ``EntryHasher.digest`` hashes (a test holds the two equal over hostile values);
- any other row (a backslash, a ``legacy-sha256`` or unknown key) is decoded field by field and
  hashed by ``EntryHasher.digest`` itself; a timestamp outside years 1-9999 is left UNCHECKED;
- a detail Python cannot read back (an integer past its 4300-digit limit, nesting past its
  recursion limit: jsonb holds both) is UNREADABLE: the portal cannot have written it (it hashes
  that same Python value), so the entry counts as edited and the walk goes on.

The HMAC is computed here, in Python, under the key from the settings: the key never goes to
PostgreSQL, and nothing here logs it.
"""

from __future__ import annotations

import hmac
import json
import re
from json.encoder import encode_basestring_ascii

from audit.services import EntryHasher, UnknownLogbookKey, canonical_json, logbook_key_secret

# A row's verdict: its content matches its hash, does not, names a key not configured, was
# left to the walk's typed reader, or holds a value Python cannot read (edited, by a database writer).
MATCH, MISMATCH, UNKNOWN_KEY, UNCHECKED, UNREADABLE = 0, 1, 2, 3, 4
# What decoding a detail jsonb holds can raise besides JSONDecodeError: int() past sys's digit limit
# (ValueError), nesting deeper than the recursion limit (RecursionError).
DETAIL_DECODE_ERRORS = (ValueError, RecursionError)

_ESCAPES = {"\\": "\\", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_DETAIL_CACHE_SIZE = 4096


def _field(raw: str) -> str | None:
    """One field of COPY's text format: ``\\N`` is NULL; backslash escapes undone."""
    if raw == "\\N":
        return None
    if "\\" not in raw:
        return raw

    def undo(match: re.Match[str]) -> str:
        try:
            return _ESCAPES[match.group(1)]
        except KeyError:  # COPY TO writes no other escape
            raise ValueError(f"unexpected escape in COPY text: {match.group(0)!r}") from None

    return _ESCAPE.sub(undo, raw)


def canonical_at(text: str | None) -> str | None:
    """PostgreSQL's timestamptz text (UTC, ISO style: ``2026-01-02 03:04:05.12+00``) as
    ``audit.services.canonical_time`` writes it (``2026-01-02T03:04:05.120000+00:00``); None for
    anything else (years past 9999, BC, infinity), which the typed reader then handles."""
    if text is None or not text.endswith("+00"):
        return None
    size = len(text)
    if text[4] != "-" or text[7] != "-" or text[10] != " " or text[13] != ":" or text[16] != ":":
        return None
    if size == 22:
        return f"{text[:10]}T{text[11:19]}+00:00"
    if 24 <= size <= 29 and text[19] == ".":
        return f"{text[:10]}T{text[11:19]}.{text[20:-3]:0<6}+00:00"
    return None


def canonical_message(
    account: str, action: str, actor: str, actor_id: str, at: str, detail: str, instances: str, key: str, prev: str,
    request: str,
) -> str:  # fmt: skip
    """The bytes ``EntryHasher.digest`` hashes for a keyed entry, from already-encoded parts:
    ``detail`` as canonical JSON, ``actor_id``/``request`` as JSON numbers or ``null``, ``at`` the
    canonical time; the strings raw (encoded here). The keys in sorted order, as the encoder sorts them."""
    enc = encode_basestring_ascii
    return (
        f'{{"account":{enc(account)},"action":{enc(action)},"actor":{enc(actor)},"actor_id":{actor_id},'
        f'"at":"{at}","detail":{detail},"instances":{enc(instances)},"key":{key},"prev":{enc(prev)},'
        f'"request":{request}}}'
    )


class _Checker:
    """Each row's verdict from its COPY text; keeps the prepared keys and a small detail cache."""

    def __init__(self) -> None:
        self.hasher = EntryHasher()
        self.keys: dict[str, tuple[bytes, str] | None] = {}
        self.details: dict[str, str] = {}

    def key(self, key_id: str) -> tuple[bytes, str] | None:
        try:
            return self.keys[key_id]
        except KeyError:
            pass
        try:
            self.hasher.prepared(key_id)  # a configured key, not legacy-sha256
            prepared: tuple[bytes, str] | None = (logbook_key_secret(key_id), encode_basestring_ascii(key_id))
        except (UnknownLogbookKey, KeyError):  # unknown, or legacy-sha256: EntryHasher.digest decides
            prepared = None
        self.keys[key_id] = prepared
        return prepared

    def detail(self, text: str) -> str:
        canonical = self.details.get(text)
        if canonical is None:
            if len(self.details) >= _DETAIL_CACHE_SIZE:
                self.details.clear()
            canonical = self.details[text] = canonical_json(json.loads(text))
        return canonical

    def verdict(self, line: str, fields: list[str]) -> int:
        _id, at, actor_id, label, action, account, request, instances, detail, prev, digest, key_id = fields
        prepared = self.key(key_id) if "\\" not in line else None
        at_canonical = canonical_at(at) if prepared is not None else None
        if prepared is None or at_canonical is None:
            return self.verdict_decoded(fields)
        try:
            canonical_detail = self.detail(detail)
        except DETAIL_DECODE_ERRORS:
            return UNREADABLE
        message = canonical_message(
            account, action, label, actor_id or "null", at_canonical, canonical_detail, instances, prepared[1],
            prev, request or "null",
        ).encode()  # fmt: skip
        # One call into OpenSSL per entry (the key's pads are redone each time, cheaper than copying an HMAC).
        return MATCH if hmac.digest(prepared[0], message, "sha256").hex() == digest else MISMATCH

    def verdict_decoded(self, raw: list[str]) -> int:
        """The rare row: decoded to the values psycopg would hand over, hashed by EntryHasher.digest."""
        try:
            fields = [_field(value) for value in raw]
        except ValueError:
            return UNCHECKED
        _id, at, actor_id, label, action, account, request, instances, detail, prev, digest, key_id = fields
        at_canonical = canonical_at(at)
        if at_canonical is None:
            return UNCHECKED
        try:
            expected = self.hasher.digest(
                key_id,  # type: ignore[arg-type]  # NULL where the model has none: hashed as null, as typed
                prev,  # type: ignore[arg-type]
                at_canonical,
                int(actor_id) if actor_id else None,
                label,  # type: ignore[arg-type]
                action,  # type: ignore[arg-type]
                account,  # type: ignore[arg-type]
                int(request) if request else None,
                instances,  # type: ignore[arg-type]
                json.loads(detail) if detail is not None else None,  # type: ignore[arg-type]
            )
        except UnknownLogbookKey:
            return UNKNOWN_KEY
        except DETAIL_DECODE_ERRORS:
            return UNREADABLE
        return MATCH if expected == digest else MISMATCH
