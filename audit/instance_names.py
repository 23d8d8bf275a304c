"""Names for the instance ids the Logbook stores, shown beside them on its page and in its exports.

The Logbook keeps only instance ids (an entry must outlive the instance and never be updated).
The app that keeps the inventory hands it a source of names at start-up
(``RequestsAppConfig.ready``), so audit names instances without importing that app. The names
are today's, from the inventory: a renamed instance shows its new name, one the inventory never
knew shows its id alone. Names come from Name tags, which anyone who may tag an instance writes:
every sink escapes them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

# Given instance ids, the name of each one the inventory knows and has a name for.
InstanceNamesSource = Callable[[Collection[str]], Mapping[str, str]]

_source: InstanceNamesSource | None = None


def instance_names_source_set(*, source: InstanceNamesSource | None) -> None:
    global _source
    _source = source


def instance_names(instance_ids: Iterable[str]) -> dict[str, str]:
    """Instance id to name for these ids (one query in the usual source); ids without a name are left out."""
    wanted = {instance_id for instance_id in instance_ids if instance_id}
    if _source is None or not wanted:
        return {}
    return {instance_id: name for instance_id, name in _source(wanted).items() if instance_id in wanted and name}
