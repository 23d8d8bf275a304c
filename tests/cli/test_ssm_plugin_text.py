"""When AWS's session-manager-plugin is needed: never for Passport's own commands, but the AWS CLI's
``aws ssm start-session`` (with ``passport aws-credentials``) needs it; both commands say so."""

from __future__ import annotations

import pytest

from passport_cli.main import main

PLUGIN_GUIDE = (
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html"
)


def test_install_ssm_plugin_says_who_needs_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install-ssm-plugin"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "Passport's own commands" in said and "do not need" in said
    assert "`aws ssm start-session`" in said and "passport aws-credentials" in said
    assert "needs AWS's session-manager-plugin installed" in said
    assert PLUGIN_GUIDE in said


def test_aws_credentials_help_says_the_aws_cli_needs_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["aws-credentials", "--help"])
    assert exited.value.code == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "aws ssm start-session" in said and "needs AWS's session-manager-plugin" in said
    assert "passport install-ssm-plugin" in said
