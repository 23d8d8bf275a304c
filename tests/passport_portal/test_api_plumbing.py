"""The project-wide API plumbing: one error format for every app's endpoints."""

from __future__ import annotations

from passport_portal.api.exception_handlers import rule_error_body


def test_rule_error_body_shapes() -> None:
    assert rule_error_body({"__all__": ["One.", "Two."]}) == {"detail": "One. Two."}
    assert rule_error_body({"__all__": ["Whole."], "reason": ["Field."]}) == {
        "non_field_errors": ["Whole."],
        "reason": ["Field."],
    }
