"""A notice on a CLI user's terminal names a person (someone started or stopped watching): OpenSSH
prints a channel's stderr raw, so the notice is escaped as the relay's closing reason is, and a name
with terminal escapes in it cannot write the engineer's clipboard (OSC 52), clear the screen or fake
a line of its own. Where such a name could come from, the site admin's user form, refuses it."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from accounts.models import User
from terminal.live import ObserversChange
from terminal.proxy.recording import ChannelRecording
from terminal.proxy.relay import SessionRelay
from tests.audit.admin_forms import form_data, superuser_client
from tests.factories import make_user

NASTY = "Eve\x1b]52;c;Y3VybCBldmlsfHNo\x07\x1b[2J\r\npassport: FAKE\u009b31m\u202e"


class _Channel:
    """The client's SSH channel as the relay writes to it (asyncssh's ``SSHServerChannel``)."""

    def __init__(self) -> None:
        self.written = b""

    def write_stderr(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False


def test_a_watchers_name_reaches_the_cli_terminal_escaped() -> None:
    relay = SessionRelay(proxy=None)  # type: ignore[arg-type]  # only the client's side is used
    channel = _Channel()
    relay.chan = channel  # type: ignore[assignment]
    recording = ChannelRecording(
        user=None,  # type: ignore[arg-type]
        grant=None,  # type: ignore[arg-type]
        ssm_session_id="s-1",
        kind="shell",
        command="",
        cols=80,
        rows=24,
        notify=relay._notify,
        stop=lambda reason: None,
        moderation=None,
    )
    async_to_sync(recording._observers)(ObserversChange(joined=(NASTY,), left=(), watching=(NASTY,)))

    written = channel.written.decode()
    assert written.startswith("passport: Eve") and written.endswith(" is watching this session.\r\n"), written
    assert written.count("\r\n") == 1, "the name put a line of its own on the engineer's terminal"
    for raw in ("\x1b", "\x07", "\u009b", "\u202e"):
        assert raw not in written, f"{raw!r} reached the terminal raw: {written!r}"
    assert "\\x1b]52;c;" in written  # shown for what it is


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_the_admin_refuses_a_name_with_terminal_escapes(field: str) -> None:
    client, _ = superuser_client()
    eve = make_user("eve")
    url = reverse("admin:accounts_user_change", args=[eve.pk])
    response = client.post(url, form_data(client, url, **{field: "Eve\x1b]52;c;eA==\x07"}))

    assert response.status_code == 200  # the form again, with its error
    errors: Any = response.context["adminform"].form.errors
    assert "U+001B" in str(errors[field]), errors
    eve.refresh_from_db()
    assert getattr(eve, field) == "", "the name was saved"
    client.post(url, form_data(client, url, **{field: "Ève O'Brien-Łukasz"}))
    assert getattr(User.objects.get(pk=eve.pk), field) == "Ève O'Brien-Łukasz"
