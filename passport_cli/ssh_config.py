"""ssh_config text in which no value can add an option.

ssh reads its config line by line, splits a line into tokens at whitespace (double quotes
group), expands ``%`` tokens in ProxyCommand, IdentityFile, CertificateFile and
UserKnownHostsFile (and ``${VAR}`` in the last three), and reads Host patterns with ``*``,
``?``, ``!`` and ``,``. Names come from the cloud, so a Host alias must match
``passport_cli.names.HOST_ALIAS_RE``; every other value is checked or quoted here.
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from passport_cli.display import printable
from passport_cli.errors import CliError
from passport_cli.names import instances_named, is_host_alias, is_instance_id, name_key

# Characters that no quoting protects on every OpenSSH version still in use.
_UNQUOTABLE = frozenset('"\\')


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp", "Cs"} for char in text)


def config_path(path: Path | str) -> str:
    """A file path as one ssh_config token: absolute, ``%`` doubled, double-quoted.

    A path with a control character, a double quote, a backslash or ``${`` cannot be written
    safely for every ssh version, so it is refused rather than written wrong.
    """
    text = str(Path(path).absolute())
    if _has_control(text) or _UNQUOTABLE.intersection(text) or "${" in text:
        raise CliError(f"The path {text!r} cannot be written in an ssh config: use a plainer config directory.")
    return '"' + text.replace("%", "%%") + '"'


def proxy_command(argv: Sequence[str]) -> str:
    """A ProxyCommand value: each argument shell-quoted (ssh runs it with ``sh -c``), ``%`` doubled."""
    for arg in argv:
        if _has_control(arg):
            raise CliError(f"{arg!r} cannot be part of an ssh ProxyCommand.")
    return shlex.join(argv).replace("%", "%%")


def host_aliases(
    grants: Iterable[tuple[str, str, bool]],
    *,
    named: Iterable[tuple[str, object]],
) -> tuple[dict[str, list[str]], list[str]]:
    """The Host aliases of each instance, and warnings for the Names left out.

    ``grants`` holds (instance id, Name, whether the portal says the Name may be an alias) of the
    instances written; ``named`` the (instance id, Name) of every instance a Name may stand for
    (``ready_instances.names_carried``: all of the person's active grants, ready or not, of any
    platform). The instance id is always an alias. A Name is one too when both the portal and
    ``is_host_alias`` agree, and when it cannot be mistaken for another host: ssh matches
    Host patterns without regard to case, and the first matching block gives the HostName,
    so a Name that looks like an instance id, or that another instance of ``named`` carries
    (``names.instances_named``, as `connect` refuses it), is left out.
    """
    entries, carried = list(grants), list(named)
    aliases: dict[str, list[str]] = {}
    warnings: list[str] = []
    for instance_id, name, portal_allows in entries:
        if not is_instance_id(instance_id):
            raise CliError(f"'{printable(instance_id)}' is not an instance id.")
        names = aliases.setdefault(instance_id, [instance_id])
        if not name or name.lower() == instance_id.lower() or name in names:
            continue
        shown = printable(name[:80])
        if not (portal_allows and is_host_alias(name)):
            warnings.append(f"the Name '{shown}' of {instance_id} cannot be an ssh Host alias: use {instance_id}")
        elif name_key(name) is None or set(instances_named(name, [*carried, (instance_id, name)])) != {instance_id}:
            warnings.append(f"the Name '{shown}' of {instance_id} could name another instance: use {instance_id}")
        else:
            names.append(name)
    return aliases, warnings
