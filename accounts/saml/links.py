"""Which SAML link (``SamlIdentity``) a NameID finds, and which one a new link would read as.

The kinds of link and their keys are in ``accounts.saml.name_ids``. A link belongs to one IdP, named
by its slug and kept as its entity id and admin row's nonce (``link_idp_bind``).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from accounts.models import SamlIdentity
from accounts.saml.config import IdentityProvider
from accounts.saml.name_ids import FOLDED_FORMATS, LEGACY_FORMAT, name_id_lookalike


def link_for_update(*, store: str, name_id: str, name_id_format: str, key: str) -> SamlIdentity | None:
    """The link of ``store`` the NameID finds, its row and its person's locked; None for none.

    A link made before Formats were kept (migration 0015) is found first, and only by its exact
    NameID, as before: it is the older person's. It takes the Format from then on (``_format_record``).
    Otherwise the key finds a link of the Format's own kind: a persistent NameID never finds an
    email-like link, whatever its case, nor the other way round.
    """
    links = (
        SamlIdentity.objects.select_related("user")
        # The link's row and the person's. FOR NO KEY UPDATE, not FOR UPDATE: a transaction
        # writing a row that refers to the person (their new request, an admin adding them to
        # an account) checks that reference at its commit, holding the Logbook's head by then;
        # it must not wait for this lock, whose holder waits for that head.
        .select_for_update(no_key=True)
        .filter(identity_store=store)
    )
    legacy = links.filter(name_id_format=LEGACY_FORMAT, name_id=name_id).order_by("created_at", "pk").first()
    if legacy is not None:
        _format_record(legacy, name_id_format)
        return legacy
    if name_id_format in FOLDED_FORMATS:
        links = links.filter(name_id_format__in=FOLDED_FORMATS)
    else:
        links = links.exclude(name_id_format__in=[*FOLDED_FORMATS, LEGACY_FORMAT])
    return links.filter(name_id_key=key).first()


def _format_record(legacy: SamlIdentity, name_id_format: str) -> None:
    """A legacy link takes the Format its NameID came with, and that kind's key. When another link
    has that key already (or reads alike, email-like), it stays a legacy link: found as before."""
    legacy.name_id_format = name_id_format
    try:
        with transaction.atomic():
            legacy.save(update_fields=["name_id_format"])
    except IntegrityError:
        legacy.refresh_from_db(fields=["name_id_format", "name_id_key", "name_id_lookalike"])


def link_reading_alike(
    *, store: str, name_id: str, name_id_format: str, others: QuerySet[SamlIdentity] | None = None
) -> int | None:
    """The person (id) of an email-like or legacy link of ``store`` (among ``others``) whose NameID
    reads as this email-like one (``name_id_lookalike``); None for none, or for another kind of NameID."""
    lookalike = name_id_lookalike(name_id)
    if name_id_format not in FOLDED_FORMATS or not lookalike:
        return None
    links = SamlIdentity.objects.all() if others is None else others
    alike = links.filter(
        identity_store=store, name_id_lookalike=lookalike, name_id_format__in=[*FOLDED_FORMATS, LEGACY_FORMAT]
    )
    return alike.values_list("user_id", flat=True).first()


def link_idp_identity(idp: IdentityProvider) -> dict[str, str]:
    """What a link keeps of the IdP it belongs to (``SamlIdentity.idp_entity_id``, ``idp_trust_nonce``)."""
    return {"idp_entity_id": idp.entity_id, "idp_trust_nonce": idp.trust_nonce}


def link_idp_bind(link: SamlIdentity, idp: IdentityProvider) -> bool:
    """Whether the link (its row locked) belongs to ``idp``: its slug, and the entity id and admin
    row's nonce it was made by (or moved to), not only another IdP given the slug since. A link bound
    to no IdP yet (``idp_entity_id`` None) is bound to the IdP of its slug here."""
    if link.idp_slug != idp.slug:
        return False
    identity = link_idp_identity(idp)
    if link.idp_entity_id is None:
        for name, value in identity.items():
            setattr(link, name, value)
        link.save(update_fields=list(identity))
        return True
    return link.idp_entity_id == identity["idp_entity_id"] and link.idp_trust_nonce == identity["idp_trust_nonce"]
