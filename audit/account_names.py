"""Names for the AWS account ids the Logbook stores, shown on its review page.

The Logbook sits below ``accounts`` and keeps only account ids. The app that owns the
accounts hands it a source of names at start-up (``AccountsConfig.ready``), so the review
page can name them without audit importing accounts. With no source, ids are shown bare.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

AccountNamesSource = Callable[[], Mapping[str, str]]

_source: AccountNamesSource | None = None


def account_names_source_set(*, source: AccountNamesSource) -> None:
    global _source
    _source = source


def account_names() -> dict[str, str]:
    """Account id to name, for every account the source knows; one query in the usual source."""
    return dict(_source()) if _source is not None else {}
