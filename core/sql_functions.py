"""A database function written twice, once for PostgreSQL and once for SQLite (the demo's default),
for the JSON reads Django's lookups cannot say: arrays read element by element where the row is."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django.db import NotSupportedError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Func
from django.db.models.sql.compiler import SQLCompiler

_NAMED = re.compile(r"%\((\w+)\)s")


class TwoDialectFunc(Func):
    """``template`` for PostgreSQL, ``template_sqlite`` for SQLite. Each names its arguments as
    ``%(name)s``, by ``arg_names`` (the order of the expressions given), as often as it needs: each
    place gets that argument's SQL, and its parameters in the order the places come. Any other
    database is refused with ``what`` named."""

    template_sqlite: ClassVar[str]
    arg_names: ClassVar[tuple[str, ...]]
    what: ClassVar[str]

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[Any, ...]]:
        if connection.vendor not in ("postgresql", "sqlite"):
            raise NotSupportedError(f"{self.what} runs on PostgreSQL and SQLite")
        template = template or (self.template_sqlite if connection.vendor == "sqlite" else self.template)
        compiled = {
            name: compiler.compile(expression)
            for name, expression in zip(self.arg_names, self.source_expressions, strict=True)
        }
        params = [param for name in _NAMED.findall(template) for param in compiled[name][1]]
        return template % {name: sql for name, (sql, _) in compiled.items()}, tuple(params)
