"""The README's `passport forward` example runs against the demo's data: load_demo's accounts keep
their SSH sessions recorded, so the CLI refuses a forward to port 22 there, and must open a port
the example can use instead (devcloud forwards it to this machine, where scripts/demo's portal listens)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import AwsAccount
from passport_cli.errors import CliError, Exit
from passport_cli.tunnel import check_forward_port
from requests_app.serializers import AccountRefOutput

pytestmark = pytest.mark.django_db

ACCOUNT_ID = "444455556666"


def _load_demo(tmp_path: Path) -> AwsAccount:
    manifest = tmp_path / "manifest.json"
    account = {"id": ACCOUNT_ID, "name": "Demo", "regions": ["us-east-1"],
               "role_arn": f"arn:aws:iam::{ACCOUNT_ID}:role/Demo"}  # fmt: skip
    manifest.write_text(json.dumps({"accounts": [account]}))
    call_command("load_demo", "--manifest", str(manifest), "--no-sync")
    return AwsAccount.objects.get(account_id=ACCOUNT_ID)


def _as_the_cli_reads_it(account: AwsAccount) -> dict[str, object]:
    return {"account": dict(AccountRefOutput(account).data)}


def test_the_readme_forward_example_is_accepted_on_a_demo_account(tmp_path: Path) -> None:
    item = _as_the_cli_reads_it(_load_demo(tmp_path))
    check_forward_port(item, 8000)  # README: passport forward web-1 8080:8000
    with pytest.raises(CliError) as refused:
        check_forward_port(item, 22)  # recorded SSH: only the recording proxy may reach it
    assert refused.value.code == Exit.REFUSED


def test_loading_the_demo_again_keeps_the_ports_an_admin_added(tmp_path: Path) -> None:
    account = _load_demo(tmp_path)
    account.extra_forward_ports = [5432, *account.extra_forward_ports]
    account.save()
    assert _load_demo(tmp_path).forward_ports == (22, 3389, 5432, 8000)
