"""`passport aws-credentials` for a request whose instances are in several regions: no one region is
exported, and each instance's is said (the portal's answer, ``/api/requests/ID/credentials/``)."""

from __future__ import annotations

from typing import Any

from passport_cli.aws_credentials import regions_note, render

PROCESS = {
    "Version": 1,
    "AccessKeyId": "ASIAEXAMPLE",
    "SecretAccessKey": "secret",
    "SessionToken": "token",
    "Expiration": "2026-12-06T09:00:00Z",
}


def _answer(**changes: Any) -> dict[str, Any]:
    return {
        "region": None,
        "regions": ["eu-west-1", "us-east-1"],
        "instances": [
            {"instance_id": "i-0aaaaaaaaaaaaaaaa", "name": "eu-web-1", "region": "eu-west-1"},
            {"instance_id": "i-0bbbbbbbbbbbbbbbb", "name": "web-1", "region": "us-east-1"},
        ],
        "withheld": [],
        "credential_process": PROCESS,
        **changes,
    }


def test_env_of_two_regions_exports_no_region_and_the_note_names_each_instance_s() -> None:
    exports = render(_answer(), "env")
    assert "AWS_REGION" not in exports and "AWS_DEFAULT_REGION" not in exports
    assert "export AWS_ACCESS_KEY_ID=ASIAEXAMPLE" in exports
    assert regions_note(_answer()).splitlines() == [
        "These credentials work in several regions; start each session in its instance's (--region):",
        "  i-0aaaaaaaaaaaaaaaa (eu-web-1): eu-west-1",
        "  i-0bbbbbbbbbbbbbbbb (web-1): us-east-1",
    ]


def test_one_region_is_exported_and_needs_no_note() -> None:
    one = _answer(
        region="us-east-1",
        regions=["us-east-1"],
        instances=[{"instance_id": "i-0bbbbbbbbbbbbbbbb", "name": "web-1", "region": "us-east-1"}],
    )
    assert "export AWS_REGION=us-east-1" in render(one, "env")
    assert regions_note(one) == ""


def test_the_note_says_which_instances_are_not_reached_and_escapes_what_the_portal_said() -> None:
    reason = "i-0aaaaaaaaaaaaaaaa (eu\x1b[2J) is in eu-west-1, a region Passport no longer manages in Acme."
    answer = _answer(
        region="us-east-1",
        regions=["us-east-1"],
        instances=[{"instance_id": "i-0bbbbbbbbbbbbbbbb", "name": "web-1", "region": "us-east-1"}],
        withheld=[{"instance_id": "i-0aaaaaaaaaaaaaaaa", "name": "eu", "region": "eu-west-1", "reason": reason}],
    )
    assert regions_note(answer) == (
        "Not reached: i-0aaaaaaaaaaaaaaaa (eu\\x1b[2J) is in eu-west-1, a region Passport no longer manages in Acme."
    )
