"""Which ready instance of the person's active requests a command means: for `connect`, `forward` and `ssh-config`.

What the person typed is an instance id or a Name. Names come from the cloud (anyone with
ec2:CreateTags writes them), so they are compared as ``names.instances_named`` says, the way
`requests create -i` and `ssh-config`'s Host aliases compare them.
"""

from __future__ import annotations

import sys
from typing import Any

from passport_cli.client import Portal, field, objects
from passport_cli.display import printable
from passport_cli.errors import CliError, Exit
from passport_cli.names import instances_named, is_instance_id
from passport_cli.output import interactive, progress


def active_grants(portal: Portal) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(request, grant) for every grant of the person's active requests, whatever its status.

    The request id and the instance id go into URLs, file names, ssh configs and ssh's
    arguments, so a grant whose ids are not what ids look like is left out (with a warning). A request
    or grant that is no JSON object is ``client.unreadable``.
    """
    active = portal.get_all("/api/requests/", {"scope": "mine", "status": "active"})
    found: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for item in active:
        for grant in objects(item, "grants"):
            request_id, instance_id = item.get("id"), grant.get("instance_id")
            if type(request_id) is not int or not is_instance_id(instance_id):
                progress(f"left out: {printable(instance_id)} of request {printable(request_id)} (not an id)")
                continue
            found.append((item, grant))
    return found


def ready_grants(
    granted: list[tuple[dict[str, Any], dict[str, Any]]], platform_name: str | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(request, grant) for every ready grant of ``granted`` (``active_grants``), of one platform if named."""
    return [
        (item, grant)
        for item, grant in granted
        if grant.get("status") == "ready" and (platform_name is None or grant.get("platform") == platform_name)
    ]


def names_carried(granted: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[tuple[str, object]]:
    """(instance id, Name) of every grant of ``granted`` (``active_grants``: every platform and status): the
    instances a Name may stand for. `connect` and `forward` refuse a Name two of them carry, and `ssh-config`
    makes no Host alias of it, both through ``names.instances_named`` over this list."""
    return [(grant["instance_id"], grant.get("name")) for _, grant in granted]


def pick(portal: Portal, wanted: str | None, request_id: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    granted = active_grants(portal)
    if request_id is not None:
        granted = [(r, g) for r, g in granted if r["id"] == request_id]
    if wanted:
        return _named(granted, wanted)
    choices = [(r, g) for r, g in granted if g.get("status") == "ready"]
    if not choices:
        raise CliError("You have no active request with a ready instance.", Exit.NOT_FOUND)
    if len(choices) == 1:
        return choices[0]
    listing = "\n".join(
        f"  {n}. {g['instance_id']} {printable(field(g, 'name', str))} [{printable(field(g, 'platform', str))}] "
        f"(request {r['id']})"
        for n, (r, g) in enumerate(choices, 1)
    )
    if not interactive():
        raise CliError(f"Which instance? Name one of:\n{listing}", Exit.USAGE)
    print(listing, file=sys.stderr)
    answer = input(f"Connect to [1-{len(choices)}]: ").strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(choices):
        raise CliError("No instance chosen.", Exit.USAGE)
    return choices[int(answer) - 1]


def _named(granted: list[tuple[dict[str, Any], dict[str, Any]]], wanted: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ready grant ``wanted`` names. Names come from the cloud (anyone with ec2:CreateTags), so an
    id names only the instance with that id, never one whose Name spells it, and a Name only when
    no other instance of the person's active requests, ready or not, carries it too (as
    ``ssh_config.host_aliases`` leaves such a Name out: both ask ``names_carried``)."""
    if is_instance_id(wanted):
        ids = [wanted]
    else:
        ids = instances_named(wanted, names_carried(granted))
        if len(ids) > 1:
            raise CliError(
                f"'{printable(wanted)}' names {len(ids)} instances of your active requests "
                f"({', '.join(printable(i) for i in ids)}): pass the instance id.",
                Exit.USAGE,
            )
    matches = [(r, g) for r, g in granted if g["instance_id"] in ids]
    ready = [(r, g) for r, g in matches if g.get("status") == "ready"]
    if ready:
        return ready[0]
    if matches:
        item, grant = matches[0]
        raise CliError(
            f"Your access to {grant['instance_id']} (request {item['id']}) is not ready: "
            f"{printable(grant.get('status'))}. See `passport requests list`.",
            Exit.NOT_FOUND,
        )
    raise CliError(f"{printable(wanted)} is not a ready instance of your active requests.", Exit.NOT_FOUND)
