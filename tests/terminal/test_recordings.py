"""Recordings: who may watch them (the rule in accounts.permissions), the cast endpoint, the SHA-256
check against the Logbook, the Logbook entry per view, and the text search."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import User
from accounts.permissions import can_view_recording, recording_visibility
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal import selectors, services, transcript
from terminal.models import TerminalSession
from terminal.recording import AsciicastWriter
from terminal.transcript.echo import NOT_SHOWN
from tests.conftest import World
from tests.terminal.test_consumers import make_active_grant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return Path(settings.MEDIA_ROOT)


def record(user: User, grant: Grant, events: list[tuple[str, str]]) -> TerminalSession:
    """A sealed recording made the way the consumer makes one: writer, session start, session end."""
    relative = services.recording_relative_path(grant=grant)
    writer = AsciicastWriter(services.recording_absolute_path(relative), cols=80, rows=24, title="t")
    session = services.terminal_session_start(user=user, grant=grant, ssm_session_id="s-1", recording_path=relative)
    for code, data in events:
        if code == "o":
            writer.output(data.encode())
        else:
            writer.input(data.encode())
    digest = writer.close()
    return services.terminal_session_end(
        session=session, reason="The shell ended.", bytes_in=writer.bytes_in, bytes_out=writer.bytes_out,
        recording_sha256=digest,
    )  # fmt: skip


@pytest.fixture
def recording(world: World) -> TerminalSession:
    grant = make_active_grant(world)
    return record(
        world.requester,
        grant,
        [
            ("o", "\x1b[32m$ \x1b[0m"),
            ("i", "cat notes\r"),
            ("o", "cat notes\r\nthe \x1b[1;31mLaunch-Code\x1b[0m is 42\r\n"),
        ],
    )


def viewer(client: Client, user: User | None) -> Client:
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("persona", "allowed"),
    [("auditor", True), ("requester", True), ("approver", True), ("member", False), ("outsider", False)],
)
def test_who_may_watch(world: World, recording: TerminalSession, client: Client, persona: str, allowed: bool) -> None:
    user = getattr(world, persona)
    assert can_view_recording(user, recording) is allowed
    assert TerminalSession.objects.filter(recording_visibility(user), pk=recording.pk).exists() is allowed
    viewer(client, user)
    page = client.get(reverse("terminal:recording", args=[recording.pk]))
    cast = client.get(reverse("terminal:recording-cast", args=[recording.pk]))
    assert page.status_code == (200 if allowed else 404)
    assert cast.status_code == (200 if allowed else 404)
    views = LogbookEntry.objects.filter(action="recording.viewed", actor=user)
    assert views.count() == (2 if allowed else 0)
    if allowed:
        assert {entry.detail["what"] for entry in views} == {"page", "cast"}
        assert all(entry.detail["terminal_session"] == recording.pk for entry in views)


def test_anonymous_is_sent_to_sign_in(recording: TerminalSession, client: Client) -> None:
    for name in ("terminal:recording", "terminal:recording-cast"):
        response = client.get(reverse(name, args=[recording.pk]))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get(reverse("terminal:recordings")).status_code == 302
    assert not LogbookEntry.objects.filter(action="recording.viewed").exists()


def test_unknown_recording_is_404(world: World, client: Client) -> None:
    viewer(client, world.auditor)
    assert client.get(reverse("terminal:recording", args=[987654])).status_code == 404
    assert client.get(reverse("terminal:recording-cast", args=[987654])).status_code == 404


def test_page_shows_the_facts_and_the_verified_digest(
    world: World, recording: TerminalSession, client: Client, media: Path
) -> None:
    viewer(client, world.auditor)
    body = client.get(reverse("terminal:recording", args=[recording.pk]) + "?t=1.5").content.decode()
    assert 'data-testid="recording-verified"' in body and 'data-testid="recording-warning"' not in body
    assert recording.recording_sha256 in body
    assert "The shell ended." in body and world.requester.username in body and world.web.instance_id in body
    assert reverse("terminal:recording-cast", args=[recording.pk]) in body
    assert "vendor/asciinema-player/asciinema-player.min.js" in body
    assert '"startAt": 1.5' in body
    TerminalSession.objects.filter(pk=recording.pk).update(ended_at=recording.started_at + timedelta(seconds=75.4))
    shown = client.get(reverse("terminal:recording", args=[recording.pk])).content.decode()
    assert "<dd>0:01:15</dd>" in shown  # whole seconds, no microseconds
    # The cast endpoint serves exactly the sealed file, never cached.
    cast = client.get(reverse("terminal:recording-cast", args=[recording.pk]))
    assert cast.getvalue() == (media / recording.recording_path).read_bytes()
    assert "no-cache" in cast["Cache-Control"] or "no-store" in cast["Cache-Control"]


def test_a_changed_file_is_flagged(world: World, recording: TerminalSession, client: Client, media: Path) -> None:
    path = media / recording.recording_path
    path.write_text(path.read_text().replace("42", "43"))
    viewer(client, world.auditor)
    body = client.get(reverse("terminal:recording", args=[recording.pk])).content.decode()
    assert 'data-testid="recording-warning"' in body and "does not match" in body
    assert 'data-testid="recording-verified"' not in body
    assert 'data-verified="false"' in body
    entry = LogbookEntry.objects.get(action="recording.viewed", actor=world.auditor)
    assert entry.detail["sha256_ok"] is False


def test_a_missing_file_is_flagged(world: World, recording: TerminalSession, client: Client, media: Path) -> None:
    (media / recording.recording_path).unlink()
    viewer(client, world.auditor)
    body = client.get(reverse("terminal:recording", args=[recording.pk])).content.decode()
    assert "missing from storage" in body and 'id="recording-player"' not in body
    assert 'data-testid="recording-missing"' in body and "does not match" not in body
    assert client.get(reverse("terminal:recording-cast", args=[recording.pk])).status_code == 404
    # Said as missing in the Logbook, never as a failed digest check (which reads like tampering).
    entry = LogbookEntry.objects.get(action="recording.missing", actor=world.auditor)
    assert entry.detail["terminal_session"] == recording.pk and "missing from storage" in entry.detail["problem"]
    assert not LogbookEntry.objects.filter(action="recording.viewed", detail__sha256_ok=False).exists()


def search(client: Client, **params: str) -> Any:
    return client.get(reverse("terminal:recordings"), params)


def hits(response: Any) -> list[int]:
    return [hit.session.pk for hit in response.context["hits"]]


def test_search_ignores_escapes_and_case_and_links_to_the_moment(
    world: World, recording: TerminalSession, client: Client, media: Path
) -> None:
    viewer(client, world.auditor)
    # "Launch-Code" was printed bold red; typed text is searched too.
    for text in ("launch-code is 42", "LAUNCH-CODE", "cat notes"):
        response = search(client, q=text)
        assert hits(response) == [recording.pk], text
    response = search(client, q="launch-code")
    hit = response.context["hits"][0]
    assert hit.where == "output" and hit.match == "Launch-Code"
    # The moment is that of the event that printed it, read back from the file.
    lines = (media / recording.recording_path).read_text().splitlines()[1:]
    printed = [json.loads(line) for line in lines if "Launch-Code" in line]
    assert len(printed) == 1 and hit.seconds == printed[0][0]
    body = response.content.decode()
    assert "<mark>Launch-Code</mark>" in body
    assert f"{reverse('terminal:recording', args=[recording.pk])}?t={hit.seconds:.3f}" in body
    assert hits(search(client, q="not-in-there")) == []
    assert hits(search(client, q="31m")) == []  # escape sequences are not text


def test_search_shows_only_what_the_person_may_watch(world: World, recording: TerminalSession, client: Client) -> None:
    other = record(world.member, make_active_grant(world, world.db), [("o", "launch-code elsewhere\r\n")])
    viewer(client, world.auditor)
    assert sorted(hits(search(client, q="launch-code"))) == sorted([recording.pk, other.pk])
    assert hits(search(client, q="launch-code", person=world.member.username)) == [other.pk]
    assert hits(search(client, q="launch-code", instance="web-1")) == [recording.pk]
    requester = viewer(Client(), world.requester)
    assert hits(search(requester, q="launch-code")) == [recording.pk]
    outsider = viewer(Client(), world.outsider)
    assert hits(search(outsider, q="launch-code")) == [] and hits(search(outsider)) == []


def test_search_says_what_is_wrong_with_the_filters(world: World, client: Client) -> None:
    viewer(client, world.auditor)
    response = search(client, q="x")
    assert "at least 2 characters" in response.content.decode()
    response = search(client, since="2026-11-25T10:00", until="2026-11-24T10:00")
    assert "&#x27;To&#x27; is before &#x27;From&#x27;." in response.content.decode()
    assert "Enter a date and time" in search(client, since="yesterday").content.decode()


def test_the_logbook_links_to_the_recording(world: World, recording: TerminalSession, client: Client) -> None:
    viewer(client, world.auditor)
    body = client.get(reverse("audit:review")).content.decode()
    assert f'href="{reverse("terminal:recording", args=[recording.pk])}"' in body


def test_the_management_command_fills_missing_text(world: World, recording: TerminalSession) -> None:
    TerminalSession.objects.filter(pk=recording.pk).update(transcript="", transcript_input="", transcript_index={})
    call_command("terminal_transcripts")
    recording.refresh_from_db()
    assert "the Launch-Code is 42" in recording.transcript and recording.transcript_input == "cat notes\n"


def test_the_management_command_rebuilds_old_transcripts_once_in_batches_with_progress(
    world: World, recording: TerminalSession
) -> None:
    """After an upgrade that changes the text (``--all``): a transcript the old cleaner stored, which
    left out everything after ESC ] CAN, is rebuilt from the recording; one already right is not
    touched, and running it again does nothing."""
    hidden = record(
        world.requester,
        make_active_grant(world),
        [("o", "$ \x1b]\x18"), ("i", "\x1b]id\r"), ("o", "id\r\nuid=0(root)\r\n$ \x1b]\x18")],
    )
    assert "uid=0(root)" in hidden.transcript and hidden.transcript_input == "id  # typed: ⟨M-]⟩id\n"
    old_index = {"o": [[0, 0.0]], "i": [], "commands": [], "commands_not_shown": 0}
    stored = TerminalSession.objects.filter(pk=hidden.pk)
    stored.update(transcript="$ ", transcript_input="", transcript_index=old_index)

    out = StringIO()
    call_command("terminal_transcripts", "--all", "--batch-size", "1", stdout=out)
    hidden.refresh_from_db()
    assert "$ id\nuid=0(root)\n" in hidden.transcript and hidden.transcript_input == "id  # typed: ⟨M-]⟩id\n"
    assert [label for _, label in hidden.transcript_index["commands"]] == ["id  # typed: ⟨M-]⟩id"]
    assert out.getvalue().splitlines() == [
        f"1/2 read (up to terminal session {recording.pk}): 0 rebuilt, 1 unchanged, 0 left as they were",
        f"2/2 read (up to terminal session {hidden.pk}): 1 rebuilt, 1 unchanged, 0 left as they were",
        "1 recording(s) indexed, 1 unchanged, 0 left as they were.",
    ]
    reindexed = LogbookEntry.objects.filter(action="recording.reindexed")
    assert [entry.detail["terminal_session"] for entry in reindexed] == [hidden.pk]

    out = StringIO()
    call_command("terminal_transcripts", "--all", stdout=out)
    assert out.getvalue().splitlines()[-1] == "0 recording(s) indexed, 2 unchanged, 0 left as they were."
    assert reindexed.count() == 1
    out = StringIO()
    call_command("terminal_transcripts", "--all", "--after", str(recording.pk), stdout=out)
    assert out.getvalue().splitlines()[0].startswith(f"1/1 read (up to terminal session {hidden.pk})")


def test_the_management_command_takes_a_password_typed_at_a_no_echo_prompt_out_of_an_old_transcript(
    world: World, recording: TerminalSession, client: Client
) -> None:
    """A transcript stored before typed lines the host did not show were left out (terminal.transcript.echo)
    has the password as typed text and as a marker: ``--all`` rebuilds it without, and the search no longer
    finds it."""
    secret = "Hunter2-Secret!"
    sudo = record(
        world.requester,
        make_active_grant(world),
        [
            ("o", "$ "),
            ("i", "sudo -k true\r"),
            ("o", "sudo -k true\r\n[sudo] password for rs-alice: "),
            ("i", secret + "\r"),
            ("o", "\r\n$ "),
        ],
    )
    assert sudo.transcript_input == f"sudo -k true\n{NOT_SHOWN}\n"  # sealed so now
    old_index = {**sudo.transcript_index, "commands": [[0.0, "sudo -k true"], [0.1, secret]]}
    stored = TerminalSession.objects.filter(pk=sudo.pk)
    stored.update(transcript_input=f"sudo -k true\n{secret}\n", transcript_index=old_index)
    viewer(client, world.auditor)
    assert hits(search(client, q="Secret!")) == [sudo.pk]

    call_command("terminal_transcripts", "--all", stdout=StringIO())
    sudo.refresh_from_db()
    assert sudo.transcript_input == f"sudo -k true\n{NOT_SHOWN}\n" and secret not in sudo.transcript
    assert [label for _, label in sudo.transcript_index["commands"]] == ["sudo -k true"]
    assert hits(search(client, q="Secret!")) == []
    assert LogbookEntry.objects.filter(action="recording.reindexed", detail__terminal_session=sudo.pk).count() == 1


def test_a_transcript_cut_at_the_cap_says_so_on_its_hit_and_its_page(
    world: World, recording: TerminalSession, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transcript, "TRANSCRIPT_MAX_CHARS", 40)
    long = record(
        world.requester,
        make_active_grant(world),
        [("o", "the launch-code is 7\r\n"), ("o", "x" * 100 + "\r\n"), ("o", "after the cut\r\n")],
    )
    note = (
        "Transcript of what was printed cut at 40 characters (0:00:00 into the recording): "
        "search does not cover the rest."
    )
    viewer(client, world.auditor)
    response = search(client, q="launch-code")
    assert hits(response) == [long.pk, recording.pk]
    rows = response.content.decode().split('data-testid="recording-row"')[1:]
    assert note in rows[0] and "recording-transcript-cut" not in rows[1]
    assert hits(search(client, q="after the cut")) == []
    assert note in client.get(reverse("terminal:recording", args=[long.pk])).content.decode()
    page = client.get(reverse("terminal:recording", args=[recording.pk])).content.decode()
    assert "recording-transcript-cut" not in page


def test_an_open_terminal_has_nothing_to_play_yet(world: World, client: Client) -> None:
    grant = make_active_grant(world)
    relative = services.recording_relative_path(grant=grant)
    session = services.terminal_session_start(
        user=world.requester, grant=grant, ssm_session_id="s-2", recording_path=relative
    )
    viewer(client, world.auditor)
    body = client.get(reverse("terminal:recording", args=[session.pk])).content.decode()
    assert 'data-testid="recording-open"' in body and 'id="recording-player"' not in body
    assert client.get(reverse("terminal:recording-cast", args=[session.pk])).status_code == 404
    # Not listed among the recordings either: only sealed ones are.
    assert session.pk not in hits(search(client))


def test_the_list_shows_when_it_ended_why_and_the_recording_state(
    world: World, recording: TerminalSession, client: Client
) -> None:
    body = viewer(client, world.auditor).get(reverse("terminal:recordings")).content.decode()
    assert "<th>Ended (UTC)</th><th>Why</th><th>Recording</th>" in body
    assert recording.ended_at is not None
    ended = f'<time datetime="{recording.ended_at.isoformat()}">{recording.ended_at:%Y-%m-%d %H:%M:%S}</time>'
    assert f'<td data-testid="recording-ended">{ended}</td>' in body
    assert '<td class="small" data-testid="recording-why">The shell ended.</td>' in body
    assert "recording-state-complete" in body and ">Complete<" in body
    page = client.get(reverse("terminal:recording", args=[recording.pk])).content.decode()
    assert 'class="recording-speed"' in page and 'data-testid="recording-partial"' not in page


def test_the_sweep_runs_on_the_scheduler() -> None:
    from django.conf import settings

    from workers import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["finalise-orphaned-terminals"]
    assert entry["task"] == "workers.tasks.finalise_orphaned_terminals"
    assert entry["schedule"].run_every.total_seconds() == settings.PASSPORT_RECORDING_SWEEP_SECONDS
    assert tasks.finalise_orphaned_terminals.name == entry["task"]


def test_the_list_says_what_each_session_was_with_the_command_line_made_visible(
    world: World, recording: TerminalSession, client: Client
) -> None:
    command = "scp -t '~/x';\x1b[2J\u202egpj.exe <b>" + "y" * 100
    TerminalSession.objects.filter(pk=recording.pk).update(client="cli", kind="exec", command=command, exit_status=3)
    body = viewer(client, world.auditor).get(reverse("terminal:recordings")).content.decode()
    assert "<th>Where</th><th>What</th><th>Ended (UTC)</th>" in body
    cell = body.split('data-testid="recording-what">', 1)[1].split("</td>", 1)[0]
    assert cell.startswith("CLI · command")
    assert "scp -t &#x27;~/x&#x27;;\\x1b[2J\\u202egpj.exe &lt;b&gt;" in cell
    assert "\x1b" not in cell and "\u202e" not in cell and "<b>" not in cell
    assert "y" * 100 not in cell.split("title=", 1)[1].split(">", 1)[1]  # shown truncated, whole in the title
    assert "exit 3" in cell


def test_a_search_snippet_and_the_end_reason_show_hidden_characters_made_visible(world: World, client: Client) -> None:
    # A host's output reordered by a bidi override reads as something else to an auditor.
    grant = make_active_grant(world)
    session = record(world.requester, grant, [("o", "deploy ok \u202e; exit 0 # SEGAMI\r\n\tSECRET-TOKEN leaked\r\n")])
    TerminalSession.objects.filter(pk=session.pk).update(end_reason="closed: x\u202eyz\x1b[8m")
    viewer(client, world.auditor)

    listing = client.get(reverse("terminal:recordings"), {"q": "secret-token"}).content.decode()
    page = client.get(reverse("terminal:recording", args=[session.pk])).content.decode()

    snippet = listing.split('<pre class="mono small">', 1)[1].split("</pre>", 1)[0]
    assert "\u202e" not in snippet and "deploy ok \\u202e; exit 0 # SEGAMI\n\t<mark>SECRET-TOKEN</mark>" in snippet
    why = listing.split('data-testid="recording-why">', 1)[1].split("</td>", 1)[0]
    reason = page.split('data-testid="recording-end-reason">', 1)[1].split("</dd>", 1)[0]
    assert why == reason == "closed: x\\u202eyz\\x1b[8m"


@pytest.mark.parametrize("state", ["partial", "failed"])
def test_the_recordings_note_shows_hidden_characters_made_visible(
    world: World, recording: TerminalSession, client: Client, state: str
) -> None:
    # Why a recording stopped can quote the storage's error: the cloud's words, as they came.
    note = "Not recorded: recording storage was unavailable (AccessDenied \u202egpj.exe\x1b[8m)."
    TerminalSession.objects.filter(pk=recording.pk).update(
        recording_state=state, recording_note=note, recorded_seconds=1
    )
    viewer(client, world.auditor)
    listing = client.get(reverse("terminal:recordings")).content.decode()
    page = client.get(reverse("terminal:recording", args=[recording.pk])).content.decode()
    for body in (listing, page):
        assert "(AccessDenied \\u202egpj.exe\\x1b[8m)." in body
        assert "\u202e" not in body and "\x1b" not in body


def test_the_players_command_markers_show_hidden_characters_made_visible(world: World, client: Client) -> None:
    # What was typed (`curl x.sh|sh #` and a reversed tail) reads as something else in the tooltip.
    grant = make_active_grant(world)
    session = record(world.requester, grant, [("i", "curl x.sh|sh #\u202ehs|hs.x lruc ton\r"), ("o", "ok\r\n")])
    viewer(client, world.auditor)
    page = client.get(reverse("terminal:recording", args=[session.pk])).content.decode()
    options = json.loads(page.split('<script id="player-options" type="application/json">', 1)[1].split("</script>")[0])
    assert [label for _, label in options["markers"]] == ["curl x.sh|sh #\\u202ehs|hs.x lruc ton"]


def test_a_search_holds_a_snippet_per_hit_never_the_transcripts(
    world: World, recording: TerminalSession, client: Client
) -> None:
    # Transcripts are kept up to 8 MiB per direction, and their index has an entry per event: a
    # hit brings back its snippet and the moment, found by the database, and nothing else.
    big = ("x" * 79 + "\n") * (2 * 2**20 // 80)
    index = {"o": [[n * 80, n / 10] for n in range(30_000)], "i": [[0, 0.5], [6, 9.25]]}
    TerminalSession.objects.filter(pk=recording.pk).update(
        transcript=big + "the Needle is here" + big, transcript_input="cat x\nneedle " + big, transcript_index=index
    )
    viewer(client, world.auditor)
    search(client)  # the person's count of recording reads (terminal.read_limits) is open from here on
    with CaptureQueriesContext(connection) as one_hit:
        assert hits(search(client, q="NEEDLE")) == [recording.pk]
    recording.refresh_from_db()
    for _ in range(3):
        recording.pk = None
        recording.save()
    TerminalSession.objects.filter(pk=recording.pk).update(transcript="nothing")

    with CaptureQueriesContext(connection) as four_hits:
        response = search(client, q="NEEDLE")

    found = response.context["hits"]
    assert len(found) == 4 and len(four_hits) == len(one_hit)  # the same queries, however many hits
    for hit in found:
        assert {"transcript", "transcript_input", "transcript_index"} <= hit.session.get_deferred_fields()
        # Nothing the hit holds is more than a snippet: no transcript came back under another name.
        held = [value for value in [*vars(hit).values(), *vars(hit.session).values()] if isinstance(value, str)]
        assert max(map(len, held)) < 1000
    input_hit, *output_hits = found  # newest first: the last copy was found in what was typed only
    assert (input_hit.where, input_hit.before, input_hit.match) == ("input", "cat x\n", "needle")
    assert input_hit.after == " " + big[:59] + "…" and input_hit.seconds == 9.25
    for hit in output_hits:
        assert (hit.where, hit.before, hit.match) == ("output", "…" + (big + "the ")[-60:], "Needle")
        assert hit.after == " is here" + big[:52] + "…"
        assert hit.seconds == len(big) // 80 / 10


def test_a_search_matches_by_lowercase_as_the_filter_does(world: World, client: Client) -> None:
    # Matching is the database's lower() (the filter's ILIKE does the same on PostgreSQL), character
    # for character: "STRAßE" finds "Straße", but casefolding (ß as ss) is not done.
    session = record(world.requester, make_active_grant(world), [("o", "Die Straße ist lang\r\n")])
    viewer(client, world.auditor)
    hit = search(client, q="STRAßE").context["hits"][0]
    assert (hit.session.pk, hit.where, hit.before, hit.match, hit.after) == (
        session.pk,
        "output",
        "Die ",
        "Straße",
        " ist lang\n",
    )
    assert hits(search(client, q="strasse")) == []


def test_a_text_search_lists_fewer_hits_than_a_listing(
    world: World, recording: TerminalSession, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "TEXT_SEARCH_LIMIT", 2)
    for _ in range(2):
        recording.pk = None
        recording.save()
    viewer(client, world.auditor)
    assert len(hits(search(client, q="launch-code"))) == 2 and len(hits(search(client))) == 3


def test_a_search_takes_wildcards_backslashes_and_bidi_characters_literally(world: World, client: Client) -> None:
    # Searched text is data: LIKE's wildcards and escape character match only themselves, and a
    # NUL is refused by the form, never sent to the database.
    grant = make_active_grant(world)
    literal = record(world.requester, grant, [("o", "50% of a_b in C:\\x \u202eevil\r\n")])
    record(world.requester, grant, [("o", "500 of axb in C:x evil\r\n")])
    viewer(client, world.auditor)
    for text in ("0%", "% of", "a_b", "_b", "C:\\x", ":\\", "\\x", "\u202eEVIL"):
        response = search(client, q=text)
        assert hits(response) == [literal.pk], text
        assert response.context["hits"][0].match.lower() == text.lower(), text
    for text in ("%%", "__", "\\\\"):
        assert hits(search(client, q=text)) == [], text
    response = search(client, q="a\x00b")
    assert response.status_code == 200 and "Null characters are not allowed." in response.content.decode()
    assert response.context["hits"] == []
