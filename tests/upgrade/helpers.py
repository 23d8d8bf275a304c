"""Migrating a test database for real, back and forth, on PostgreSQL."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate to ``targets``; the models (apps) of that state."""
    MigrationExecutor(connection).migrate(targets)
    return state_apps(targets)


def state_apps(targets: list[tuple[str, str]]) -> Any:
    """The models as the code of the release at ``targets`` knew them, on whatever schema is there."""
    return MigrationExecutor(connection).loader.project_state(targets).apps


def migrate_to_latest() -> None:
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    with connection.cursor() as cursor:  # the Logbook may be truncated between tests only
        cursor.execute("SET passport.logbook_truncate = 'allow'")
