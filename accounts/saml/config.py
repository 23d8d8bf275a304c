"""Which SAML identity providers Passport trusts, and the python3-saml settings for each.

An IdP comes from settings (``PASSPORT_SAML_IDPS``, a JSON list) or from the admin
(``SamlIdentityProvider``); a settings entry wins over an admin row with the same slug.
Keys of a settings entry:

- ``slug`` (URL-safe name), ``name`` (button label), ``identity_store`` (customer|internal)
- ``entity_id``, ``sso_url``, ``slo_url`` (optional), ``x509cert`` (PEM or base64 body),
  or ``metadata_url`` instead of ``sso_url``/``slo_url``/``x509cert``
- ``allow_idp_initiated`` (default false), ``want_messages_signed`` (default false),
  ``attributes`` (optional: our field -> list of attribute names, see DEFAULT_ATTRIBUTES)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.utils.text import slugify
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

from accounts.models import SamlIdentityProvider, User

# Where each of our fields is looked for among the assertion's attributes, first match wins.
DEFAULT_ATTRIBUTES: dict[str, list[str]] = {
    "email": [
        "email",
        "mail",
        "urn:oid:0.9.2342.19200300.100.1.3",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ],
    "first_name": [
        "givenName",
        "firstName",
        "urn:oid:2.5.4.42",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    ],
    "last_name": [
        "sn",
        "surname",
        "lastName",
        "urn:oid:2.5.4.4",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    ],
    "display_name": [
        "displayName",
        "urn:oid:2.16.840.1.113730.3.1.241",
        "http://schemas.microsoft.com/identity/claims/displayname",
    ],
    "username": ["username", "uid", "urn:oid:0.9.2342.19200300.100.1.1"],
    "groups": ["groups", "memberOf", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"],
    # AWS's own SAML federation: each value is "role ARN,provider ARN" (either order), one per role.
    "aws_roles": ["https://aws.amazon.com/SAML/Attributes/Role"],
}
# Our fields that keep every value of their attribute; the others keep the first.
LIST_ATTRIBUTES = frozenset({"groups", "aws_roles"})

_STORES = {choice.value for choice in User.IdentityStore}


@dataclass(frozen=True)
class IdentityProvider:
    slug: str
    name: str
    identity_store: str
    entity_id: str
    sso_url: str = ""
    slo_url: str = ""
    x509cert: str = ""
    metadata_url: str = ""
    allow_idp_initiated: bool = False
    want_messages_signed: bool = False
    attributes: dict[str, list[str]] = field(default_factory=lambda: DEFAULT_ATTRIBUTES)
    # An admin row's ``trust_generation`` and ``trust_nonce``; 0 and "" for a settings entry, which
    # has no save to move them.
    trust_generation: int = 0
    trust_nonce: str = ""

    @property
    def store_label(self) -> str:
        return User.IdentityStore(self.identity_store).label


def _from_settings(entry: dict[str, Any]) -> IdentityProvider:
    if not isinstance(entry, dict):
        raise ImproperlyConfigured("Each PASSPORT_SAML_IDPS entry must be a JSON object.")
    slug = str(entry.get("slug", ""))
    where = f"PASSPORT_SAML_IDPS entry {slug or '(no slug)'}"
    if not slug or slugify(slug) != slug:
        raise ImproperlyConfigured(f"{where}: 'slug' must be a lowercase URL-safe name.")
    store = entry.get("identity_store")
    if store not in _STORES:
        raise ImproperlyConfigured(f"{where}: 'identity_store' must be one of {sorted(_STORES)}.")
    if not entry.get("entity_id"):
        raise ImproperlyConfigured(f"{where}: 'entity_id' is required.")
    if not entry.get("metadata_url") and not (entry.get("sso_url") and entry.get("x509cert")):
        raise ImproperlyConfigured(f"{where}: give 'metadata_url', or 'sso_url' and 'x509cert'.")
    urls = [entry.get(key) or "" for key in ("sso_url", "slo_url", "metadata_url")]
    if settings.PRODUCTION and any(url and not url.startswith("https://") for url in urls):
        raise ImproperlyConfigured(f"{where}: production accepts only https:// identity provider URLs.")
    attributes = dict(DEFAULT_ATTRIBUTES)
    attributes.update({key: list(value) for key, value in (entry.get("attributes") or {}).items()})
    return IdentityProvider(
        slug=slug,
        name=str(entry.get("name") or slug),
        identity_store=store,
        entity_id=entry["entity_id"],
        sso_url=entry.get("sso_url") or "",
        slo_url=entry.get("slo_url") or "",
        x509cert=entry.get("x509cert") or "",
        metadata_url=entry.get("metadata_url") or "",
        allow_idp_initiated=bool(entry.get("allow_idp_initiated", False)),
        want_messages_signed=bool(entry.get("want_messages_signed", False)),
        attributes=attributes,
    )


def _from_row(row: SamlIdentityProvider) -> IdentityProvider:
    return IdentityProvider(
        slug=row.slug,
        name=row.name,
        identity_store=row.identity_store,
        entity_id=row.entity_id,
        sso_url=row.sso_url,
        slo_url=row.slo_url,
        x509cert=row.x509cert,
        allow_idp_initiated=row.allow_idp_initiated,
        trust_generation=row.trust_generation,
        trust_nonce=row.trust_nonce,
    )


def settings_identity_providers() -> list[IdentityProvider]:
    """The IdPs of PASSPORT_SAML_IDPS; ImproperlyConfigured says what is wrong with one."""
    configured = [_from_settings(entry) for entry in settings.PASSPORT_SAML_IDPS]
    if len({idp.slug for idp in configured}) != len(configured):
        raise ImproperlyConfigured("PASSPORT_SAML_IDPS: two identity providers share a slug.")
    return configured


def identity_providers() -> list[IdentityProvider]:
    """Every IdP people may sign in with, settings first, in a stable order."""
    configured = settings_identity_providers()
    slugs = {idp.slug for idp in configured}
    rows = SamlIdentityProvider.objects.filter(enabled=True).exclude(slug__in=slugs).order_by("name")
    return configured + [_from_row(row) for row in rows]


def identity_provider(slug: str) -> IdentityProvider | None:
    return next((idp for idp in identity_providers() if idp.slug == slug), None)


def identity_provider_live(slug: str) -> bool:
    """Whether people may still sign in through this IdP (in settings, or enabled in the admin): what
    it signed in lives only as long as it does (accounts.session_lifetime, accounts.saml.withdrawal).
    At most one query."""
    if any(idp.slug == slug for idp in settings_identity_providers()):
        return True
    return SamlIdentityProvider.objects.filter(slug=slug, enabled=True).exists()


_PEM_LINE = re.compile(r"-----(BEGIN|END) CERTIFICATE-----|\s+")


def certificate_body(text: str) -> str:
    """A configured certificate without its PEM lines and white space: the same certificate however
    it was pasted (python3-saml takes either)."""
    return _PEM_LINE.sub("", text)


def identity_provider_trust(idp: IdentityProvider) -> str:
    """What a session records of the IdP that signed it in, and lives only as long as it stays the
    same (accounts.session_lifetime): a digest of its entity id, its certificate (as configured,
    without PEM lines or white space), its metadata URL, its trust generation and an admin row's
    nonce; for an IdP read from its metadata URL, also the signing certificates that metadata named
    when last read (``metadata_certificates``). A certificate or entity id changed (in the settings,
    the admin or the metadata), an admin row disabled or renamed (its generation moves on:
    accounts.saml.withdrawal), or deleted and made again (another nonce), makes it another, for
    good."""
    parts: list[Any] = [idp.entity_id, certificate_body(idp.x509cert), idp.metadata_url, idp.trust_generation]
    if idp.trust_nonce:  # a row from before the nonce was kept keeps the trust it had
        parts.append(idp.trust_nonce)
    fetched = metadata_certificates(idp)
    if fetched:  # a metadata URL's IdP: the signing certificates its metadata named when last read
        parts.append(fetched)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def identity_provider_trust_of(slug: str) -> str | None:
    """``identity_provider_trust`` of the live IdP of this slug (in settings, or enabled in the
    admin); None when people may no longer sign in through it. At most one query."""
    configured = next((idp for idp in settings_identity_providers() if idp.slug == slug), None)
    if configured is None:
        row = SamlIdentityProvider.objects.filter(slug=slug, enabled=True).first()
        configured = _from_row(row) if row is not None else None
    return identity_provider_trust(configured) if configured is not None else None


def trust_verdict(current: str | None, recorded: object) -> str | None:
    """What became of the IdP that vouched for a session, token or code, which recorded its trust
    then (``recorded``; anything but a string: none recorded) against its trust now (``current``:
    ``identity_provider_trust_of``): None while it is the same, ``idp_disabled`` while people may
    not sign in through it, ``idp_replaced`` when it is another now or nothing was recorded."""
    if current is None:
        return "idp_disabled"
    if not isinstance(recorded, str) or not constant_time_compare(recorded, current):
        return "idp_replaced"
    return None


def _metadata_cache_key(idp: IdentityProvider) -> str:
    return f"passport.saml.metadata.{idp.slug}"


def _metadata_last_read_key(idp: IdentityProvider) -> str:
    return f"passport.saml.metadata_last_read.{idp.slug}"


def metadata_certificates(idp: IdentityProvider) -> list[str]:
    """The signing certificates (bodies, sorted) of a metadata URL's IdP as its metadata named them
    when last read: from the 4-hour copy, or once that lapsed, from the last one read, which is kept
    until another is (a fetch that fails changes neither, so it ends no session). Never fetches: it
    is asked at every use of a session (accounts.session_lifetime). [] for an IdP with a configured
    certificate, or one whose metadata was never read (the trust is then as before it was kept)."""
    if not idp.metadata_url:
        return []
    copy_key, last_key = _metadata_cache_key(idp), _metadata_last_read_key(idp)
    found = cache.get_many([copy_key, last_key])
    section = found.get(copy_key)
    if section is not None and last_key not in found:  # a copy read before the last one was kept
        cache.set(last_key, section, None)
    section = section if section is not None else found.get(last_key)
    if not isinstance(section, dict):
        return []
    multi = section.get("x509certMulti")
    signing = multi.get("signing") if isinstance(multi, dict) else None
    candidates = [section.get("x509cert"), *(signing if isinstance(signing, list) else [])]
    return sorted({certificate_body(cert) for cert in candidates if isinstance(cert, str) and cert.strip()})


def _idp_section(idp: IdentityProvider) -> dict[str, Any]:
    if idp.metadata_url:
        cache_key = _metadata_cache_key(idp)
        cached = cache.get(cache_key)
        if cached is None:
            parsed = OneLogin_Saml2_IdPMetadataParser.parse_remote(
                idp.metadata_url, entity_id=idp.entity_id, timeout=10
            )
            cached = parsed["idp"]
            cache.set(cache_key, cached, 4 * 3600)
            # Kept without end: what the trust of its sessions is read from once the copy above lapses.
            cache.set(_metadata_last_read_key(idp), cached, None)
        return dict(cached)
    section: dict[str, Any] = {
        "entityId": idp.entity_id,
        "singleSignOnService": {"url": idp.sso_url, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT},
        "x509cert": idp.x509cert,
    }
    if idp.slo_url:
        section["singleLogoutService"] = {"url": idp.slo_url, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT}
    return section


def sp_entity_id(request: HttpRequest, idp: IdentityProvider) -> str:
    """Our entity id towards one IdP: the URL of the metadata we serve for it."""
    return request.build_absolute_uri(reverse("saml_metadata", args=[idp.slug]))


def saml_settings(request: HttpRequest, idp: IdentityProvider) -> dict[str, Any]:
    """python3-saml settings: strict, and an assertion is accepted only if the IdP signed it."""
    signing = bool(settings.PASSPORT_SAML_SP_CERT and settings.PASSPORT_SAML_SP_KEY)
    sp: dict[str, Any] = {
        "entityId": sp_entity_id(request, idp),
        "assertionConsumerService": {
            "url": request.build_absolute_uri(reverse("saml_acs", args=[idp.slug])),
            "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST,
        },
        "singleLogoutService": {
            "url": request.build_absolute_uri(reverse("saml_sls", args=[idp.slug])),
            "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT,
        },
        "NameIDFormat": OneLogin_Saml2_Constants.NAMEID_UNSPECIFIED,
    }
    if signing:
        sp["x509cert"] = settings.PASSPORT_SAML_SP_CERT
        sp["privateKey"] = settings.PASSPORT_SAML_SP_KEY
    return {
        "strict": True,
        "debug": False,
        "sp": sp,
        "idp": _idp_section(idp),
        "security": {
            "authnRequestsSigned": signing,
            "logoutRequestSigned": signing,
            "logoutResponseSigned": signing,
            "wantAssertionsSigned": True,
            "wantMessagesSigned": idp.want_messages_signed,
            "wantAssertionsEncrypted": False,
            "wantNameId": True,
            "wantNameIdEncrypted": False,
            "wantAttributeStatement": False,
            "requestedAuthnContext": False,
            "rejectDeprecatedAlgorithm": True,
            "signatureAlgorithm": OneLogin_Saml2_Constants.RSA_SHA256,
            "digestAlgorithm": OneLogin_Saml2_Constants.SHA256,
            # Single-label hosts (localhost) are fine for the demo; the URLs come from our settings.
            "allowSingleLabelDomains": True,
        },
    }


def request_data(request: HttpRequest) -> dict[str, Any]:
    """The parts of a Django request python3-saml reads (it rebuilds our URL to check Destination)."""
    data: dict[str, Any] = {
        "https": "on" if request.is_secure() else "off",
        "http_host": request.get_host(),
        "script_name": request.META.get("SCRIPT_NAME", ""),
        "path_info": request.path_info,
        "get_data": request.GET.copy(),
        "post_data": request.POST.copy(),
        # Signatures on redirect-binding messages are checked over the query as sent.
        "query_string": request.META.get("QUERY_STRING", ""),
        "validate_signature_from_qs": True,
    }
    return data


def known_logout_url(idp: IdentityProvider) -> str:
    """The IdP's single-logout URL as already known: configured, or from metadata read before.

    Never fetches: it is asked while rendering every page of a person signed in by SAML.
    """
    if not idp.metadata_url:
        return idp.slo_url
    cached = cache.get(_metadata_cache_key(idp)) or {}
    return str((cached.get("singleLogoutService") or {}).get("url") or "")
