"""Admin changes on the record: the mixins every ModelAdmin and inline use, and what they write."""

from audit.admin_trail.mixins import (
    EVIDENCE_MODELS,
    AuditedAdminMixin,
    AuditedInlineMixin,
    EvidenceAdminMixin,
    EvidenceInlineMixin,
    ReadOnlyAdminMixin,
    audited_admin_class,
    audited_inline_class,
    is_evidence,
)

__all__ = [
    "EVIDENCE_MODELS",
    "AuditedAdminMixin",
    "AuditedInlineMixin",
    "EvidenceAdminMixin",
    "EvidenceInlineMixin",
    "ReadOnlyAdminMixin",
    "audited_admin_class",
    "audited_inline_class",
    "is_evidence",
]
